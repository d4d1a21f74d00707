"""The one check of a token a route may require (METRICS_TOKEN, API_DOCS_TOKEN).

"Authorization: Bearer <token>", the scheme in any case (RFC 7235: schemes are
case-insensitive); where a browser must be able to send it (the API docs), also HTTP Basic
with the token as the password, any user name. Compared in constant time.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def bearer_token(header: str) -> str | None:
    """The token of an "Authorization: Bearer <token>" header (the scheme in any case); None
    for another scheme or no token. Every check of a bearer token reads it here (the route
    tokens below, API keys, the Pub/Sub push token)."""
    scheme, _, credentials = header.strip().partition(" ")
    return (credentials.strip() or None) if scheme.lower() == "bearer" else None


def authorized(header: str, token: str, basic: bool = False) -> bool:
    """Whether an Authorization header carries `token`."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        given = bearer_token(header) or ""
    elif basic and scheme.lower() == "basic":
        try:
            given = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def secret_digest(secret: str) -> bytes:
    """What a secret is kept as and compared by: its sha256."""
    return hashlib.sha256(secret.encode()).digest()


def same_secret(given: str, digest: bytes) -> bool:
    """Whether `given` is the secret whose digest is `digest`, in constant time: the digests
    compared, so neither the time taken nor an early exit says anything of the secret's length
    or content (the API keys' rule, http/api_keys.py)."""
    return hmac.compare_digest(secret_digest(given), digest)
