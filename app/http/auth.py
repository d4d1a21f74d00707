"""The one check of a token a route may require (METRICS_TOKEN, API_DOCS_TOKEN).

"Authorization: Bearer <token>", the scheme in any case (RFC 7235: schemes are
case-insensitive); where a browser must be able to send it (the API docs), also HTTP Basic
with the token as the password, any user name. Compared in constant time.
"""
from __future__ import annotations

import base64
import binascii
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
