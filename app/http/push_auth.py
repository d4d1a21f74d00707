"""Who may call POST /pubsub/push: the push subscription's service account, proven by the OIDC
token Pub/Sub sends (Authorization: Bearer), checked by the app itself.

Cloud Run's IAM admits a caller to the whole service, not to one path: any principal with
roles/run.invoker (a person testing /predict, another service) could otherwise post forged
batch requests that write to the predictions table. So with PUSH_AUTH on (the default on Cloud
Run) the token must be signed by Google (certificates fetched from Google, cached as their
Cache-Control allows), unexpired, issued by accounts.google.com, for PUSH_AUDIENCE, to
PUSH_SERVICE_ACCOUNT with a verified email. A WSGI middleware in front of the fast path and
Flask, so the check runs once whichever answers, before the body is read.

The audience is a setting, never the request's Host: behind a proxy that forwards any Host, a
token minted for another service would pass as this one's. `make deploy` and `make
create-push-subscription` agree on one value without a URL (<project>/<region>/<service>/pubsub/push,
which deploy also makes a custom audience Cloud Run's IAM accepts).

Answers: 401 (JSON, WWW-Authenticate: Bearer) for a missing or invalid token; 503 when the
check cannot be made (PUSH_SERVICE_ACCOUNT or PUSH_AUDIENCE unset, google-auth missing, Google's
certificates unreachable). A 503 is our fault, logged, and Pub/Sub redelivers the message (then
dead-letters it), so nothing is lost while the setting is fixed; failing open would accept anyone.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from typing import Callable, Iterable, NamedTuple

from mlapi.config import Settings
from mlapi.errors import MlapiError, Unauthorized, cut
from mlapi.http.auth import bearer_token
from mlapi.http.errors import error_response, log_error, start_json
from mlapi.http.pipeline import ROUTE_KEY
from mlapi.protocols.jsonio import dumps

log = logging.getLogger(__name__)

PUSH_PATH = "/pubsub/push"
# Where Google publishes the keys its OIDC tokens are signed with (google-auth's default too).
# A module constant so the tests can point it at certificates of their own.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
# Pub/Sub's and this host's clocks may differ a little; a token's iat/exp get this much slack.
CLOCK_SKEW_SECONDS = 10
CERTS_TIMEOUT_SECONDS = 5
# Google serves its certificates with max-age ~5-7 h; without a header they are kept this long.
DEFAULT_CERTS_SECONDS = 300
# A token naming a key the cached certificates lack makes us fetch them again before their
# max-age (Google may have published a new key since), but at most this often: a flood of
# tokens with made-up key ids costs Google one request per this many seconds per worker.
UNKNOWN_KEY_REFETCH_SECONDS = 60
# What an error message may quote of google-auth's reasons (they can carry the token's claims).
REASON_CHARS = 160
_MAX_AGE = re.compile(r"max-age=(\d+)")


class PushTokenRefused(Unauthorized):
    """A push without a token Google signed for PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT."""

    headers = (("WWW-Authenticate", 'Bearer realm="pubsub-push"'),)


class PushAuthUnavailable(MlapiError):
    """The token cannot be checked: our configuration or Google's certificates. Redelivered."""

    status_code = 503


def guard_push(app: Callable, settings: Settings) -> Callable:
    """`app` itself when PUSH_AUTH is off; else `app` behind the push token check."""
    return PushAuth(app, settings) if settings.push_auth else app


class PushAuth:
    """WSGI middleware: POST /pubsub/push answers 401/503 unless its token checks out."""

    def __init__(self, app: Callable, settings: Settings):
        self.app = app
        self.audience = settings.push_audience
        self.service_account = settings.push_service_account
        missing = {name: hint for name, value, hint in (
            ("PUSH_SERVICE_ACCOUNT", self.service_account, "the push subscription's service account (make deploy "
             "sets <GCP_SERVICE_ACCOUNT_NAME>-pubsub@<project>.iam.gserviceaccount.com)"),
            ("PUSH_AUDIENCE", self.audience, "the audience of the subscription's tokens (make deploy and make "
             "create-push-subscription both use <project>/<region>/<service>/pubsub/push)"),
        ) if not value}
        self.unavailable: str | None = None
        if missing:
            self.unavailable = (f"PUSH_AUTH is on (the default on Cloud Run) but {' and '.join(missing)} "
                                f"{'is' if len(missing) == 1 else 'are'} not set: set "
                                f"{'; '.join(f'{name} to {hint}' for name, hint in missing.items())}, or "
                                f"PUSH_AUTH=off if nothing but Pub/Sub can reach this service")
        try:
            from google.auth import exceptions
            from google.auth.transport.requests import Request
            from google.oauth2 import id_token
        except ImportError:
            self.unavailable = ("PUSH_AUTH is on but google-auth is not installed: install mlapi[gcs] "
                                "(or mlapi[pubsub]), or set PUSH_AUTH=off")
        else:
            self._verify_token, self._errors = id_token.verify_token, exceptions
            self._certs = CachedCerts(Request(), exceptions.TransportError)
        if self.unavailable:
            log.error("POST %s will answer 503: %s", PUSH_PATH, self.unavailable)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PUSH_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        try:
            self.check(environ)
        except MlapiError as exc:
            environ[ROUTE_KEY] = PUSH_PATH  # the request metrics name the route that refused
            log_error(exc, "POST", PUSH_PATH)
            status, error, headers = error_response(exc)
            body = dumps(error)
            start_json(start_response, status, body, headers)
            return [body]
        return self.app(environ, start_response)

    def check(self, environ: dict) -> dict:
        """The token's claims; raises PushTokenRefused (401) or PushAuthUnavailable (503)."""
        if self.unavailable:
            raise PushAuthUnavailable(self.unavailable)
        token = bearer_token(environ.get("HTTP_AUTHORIZATION", ""))
        if token is None:
            raise PushTokenRefused(f"POST {PUSH_PATH} needs Authorization: Bearer <OIDC token>, which a push "
                                   f"subscription sends when created with --push-auth-service-account")
        self._certs.expect_key(GOOGLE_CERTS_URL, key_id(token))
        try:
            claims = self._verify_token(token, self._certs, audience=self.audience,
                                        certs_url=GOOGLE_CERTS_URL, clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        except self._errors.TransportError as exc:
            raise PushAuthUnavailable(f"could not fetch Google's token certificates to check the push token: "
                                      f"{cut(str(exc), REASON_CHARS)}") from None
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError,
                self._errors.GoogleAuthError) as exc:
            # Bad signature, expired, wrong audience, malformed: google-auth says which (a crafted
            # header, e.g. a JSON list where an object belongs, fails its parsing with the others;
            # JSON nested deeper than the parser recurses raises RecursionError, no ValueError).
            raise PushTokenRefused(f"the push token is not valid: {cut(str(exc), REASON_CHARS)}") from None
        if claims.get("iss") not in ISSUERS:
            raise PushTokenRefused("the push token was not issued by accounts.google.com")
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise PushTokenRefused("the push token is not the push subscription's service account's "
                               "(PUSH_SERVICE_ACCOUNT), or its email is not verified")
        return claims


def key_id(token: str) -> str | None:
    """The key id (`kid`) a token's header names, read without checking anything: which
    certificate it claims to be signed with. None when the header is unreadable (verify_token
    then says why the token is refused)."""
    header = token.split(".", 1)[0]
    try:
        fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, RecursionError):  # bad base64 (binascii.Error), UTF-8 or JSON; JSON nested too deep
        return None
    kid = fields.get("kid") if isinstance(fields, dict) else None
    return kid if isinstance(kid, str) else None


class CachedCopy(NamedTuple):
    """The certificates as last fetched."""
    fetch_after: float  # monotonic: expires, unless expect_key marked the copy stale sooner (0)
    response: object
    key_ids: frozenset
    expires: float  # monotonic: the end of its max-age


class CachedCerts:
    """A google-auth transport for GET requests of the certificates URL that keeps the answer for
    its Cache-Control max-age: verify_token fetches the certificates on every call otherwise, a
    round trip to Google per push. Other requests pass straight through."""

    def __init__(self, request: Callable, transport_error: type[Exception]):
        self.request = request
        self.transport_error = transport_error  # what `request` raises when Google is unreachable
        self.lock = threading.Lock()
        self.cached: dict[str, CachedCopy] = {}  # by url
        self.refetched_at = float("-inf")  # the last fetch an unknown key id caused

    def __call__(self, url: str, method: str = "GET", **kwargs):
        if method != "GET":
            return self.request(url, method=method, **kwargs)
        with self.lock:  # one fetch when many threads find the cache stale at once
            entry = self.cached.get(url)
            now = time.monotonic()
            if entry is not None and now < entry.fetch_after:
                return entry.response
            try:
                response = self.request(url, method="GET", timeout=CERTS_TIMEOUT_SECONDS)
            except self.transport_error:
                kept = self.kept(url, entry, now)
                if kept is None:
                    raise
                return kept
            if response.status != 200:
                kept = self.kept(url, entry, now)
                return response if kept is None else kept
            expires = time.monotonic() + max_age(response.headers)
            self.cached[url] = CachedCopy(expires, response, published_key_ids(response.data), expires)
            return response

    def kept(self, url: str, entry: CachedCopy | None, now: float):
        """After a failed fetch, the response we had when it is still within its max-age (only
        expect_key marked it stale), else None. Kept with its expiry restored, so the tokens it
        can check pass (the unknown kid's is refused) and the next push does not retry the fetch
        (the next unknown kid may, UNKNOWN_KEY_REFETCH_SECONDS on). A copy past its max-age is
        not kept: verify_token then fails, a 503, as when nothing was cached."""
        if entry is None or now >= entry.expires:
            return None
        self.cached[url] = entry._replace(fetch_after=entry.expires)
        return entry.response

    def expect_key(self, url: str, kid: str | None) -> None:
        """Mark the cached certificates of `url` stale when they lack `kid`, so the next call
        fetches them again: Google may have started signing with a key published after our copy
        was taken. At most once per UNKNOWN_KEY_REFETCH_SECONDS, whatever the kid. The copy
        stays, for when that fetch fails."""
        if kid is None:
            return
        with self.lock:
            entry = self.cached.get(url)
            if entry is None or kid in entry.key_ids:
                return
            now = time.monotonic()
            if now - self.refetched_at < UNKNOWN_KEY_REFETCH_SECONDS:
                return  # the token is checked against the certificates we have, and refused
            self.refetched_at = now
            self.cached[url] = entry._replace(fetch_after=0.0)


def published_key_ids(data: bytes) -> frozenset:
    """The key ids of a certificates document ({kid: PEM}); none when it is not one."""
    try:
        document = json.loads(data)
    except (ValueError, TypeError, RecursionError):
        return frozenset()
    return frozenset(document) if isinstance(document, dict) else frozenset()


def max_age(headers) -> int:
    """Seconds the certificates may be kept (Google rotates keys but publishes the next one in
    advance, well within max-age, so a cached set never lacks a key a fresh token uses)."""
    control = next((value for name, value in (headers or {}).items() if name.lower() == "cache-control"), "")
    match = _MAX_AGE.search(control)
    return int(match.group(1)) if match else DEFAULT_CERTS_SECONDS
