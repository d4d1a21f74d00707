"""API keys (API_KEYS / API_KEYS_FILE): which key a request carries, checked in constant time.

Deny by default: with keys on, every route needs one except those that keep their own rules
(OPEN_PATHS: health and readiness for the platform's probes, /metrics behind METRICS_TOKEN, the
API docs behind API_DOCS_TOKEN, the Pub/Sub push behind its OIDC token), so a route added later
is protected without anyone remembering to. A key is never logged or stored: only its id, the
first 8 hex digits of its sha256, which names it in logs, rate limits and call logs.
"""
from __future__ import annotations

import hashlib
import hmac
import logging

from mlapi.errors import ApiKeyRequired, ConfigurationError, InvalidApiKey
from mlapi.http.auth import bearer_token
from mlapi.http.rate_limit import EXEMPT_PATHS

log = logging.getLogger(__name__)

# The routes with rules of their own (the probes, /metrics' token, the push's OIDC token: the
# paths rate limits exempt too), the API docs (API_DOCS_TOKEN) and the admin reload (ADMIN_TOKEN,
# in the same Authorization header a key would use; without ADMIN_TOKEN a 404).
OPEN_PATHS = EXEMPT_PATHS | {"/openapi.json", "/docs", "/docs/", "/admin/reload"}
DOCS_ASSETS = "/docs/"  # /docs/<asset>: one path segment under it


def key_id(key: str) -> str:
    """What logs and counters know a key by: it names the key without revealing it."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def open_path(path: str) -> bool:
    """A route that keeps its own rules: no API key is asked for (or read) there."""
    return path in OPEN_PATHS or (path.startswith(DOCS_ASSETS) and "/" not in path[len(DOCS_ASSETS):])


class ApiKeys:
    def __init__(self, keys: tuple[str, ...]):
        # Digests, not keys: each request's key is hashed once and compared with every digest
        # (hmac.compare_digest, no early exit), so the time taken says nothing of any key.
        self.digests = [(hashlib.sha256(key.encode()).digest(), key_id(key)) for key in keys]
        ids = [identity for _, identity in self.digests]
        if len(set(ids)) != len(ids):  # two keys would share one caller's rate limit and call log
            raise ConfigurationError("two API keys share a key id (the first 8 hex digits of their sha256): "
                                     "replace one of them")
        log.info("API keys on: %d keys, ids %s", len(ids), ", ".join(ids))

    def identify(self, environ: dict) -> str:
        """The id of the key the request carries; ApiKeyRequired (401) without a key,
        InvalidApiKey (401, error="invalid_token") with one that is not the server's."""
        given = presented_key(environ)
        if given is None:
            raise ApiKeyRequired("this route needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>")
        digest = hashlib.sha256(given.encode()).digest()
        found = None
        for known, identity in self.digests:
            if hmac.compare_digest(digest, known):
                found = identity
        if found is None:  # not quoted back, not logged: a wrong key may be a real one mistyped
            raise InvalidApiKey("the API key is not valid: send one of the server's keys as Authorization: "
                                 "Bearer <key> or X-API-Key: <key>")
        return found


def presented_key(environ: dict) -> str | None:
    """The key of "Authorization: Bearer <key>" (the scheme in any case, RFC 7235), else of
    "X-API-Key: <key>"; None when the request has neither."""
    return bearer_token(environ.get("HTTP_AUTHORIZATION", "")) or environ.get("HTTP_X_API_KEY", "").strip() or None
