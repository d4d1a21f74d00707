"""Who may call POST /pubsub/push: the push subscription's service account, proven by the OIDC
token Pub/Sub sends (Authorization: Bearer), checked by the app itself.

Cloud Run's IAM admits a caller to the whole service, not to one path: any principal with
roles/run.invoker (a person testing /predict, another service) could otherwise post forged
batch requests that write to the predictions table. So with PUSH_AUTH on (the default on Cloud
Run) the token must be signed by Google (certificates fetched from Google, cached as their
Cache-Control allows), unexpired, issued by accounts.google.com, for this service (its audience),
to PUSH_SERVICE_ACCOUNT with a verified email. A WSGI middleware in front of the fast path and
Flask, so the check runs once whichever answers, before the body is read.

Answers: 401 (JSON, WWW-Authenticate: Bearer) for a missing or invalid token; 503 when the
check cannot be made (PUSH_SERVICE_ACCOUNT unset, google-auth missing, Google's certificates
unreachable). A 503 is our fault, logged, and Pub/Sub redelivers the message (then dead-letters
it), so nothing is lost while the setting is fixed; failing open would accept anyone.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from http import HTTPStatus
from typing import Callable, Iterable

from mlapi.config import Settings
from mlapi.errors import MlapiError, Unauthorized
from mlapi.http.errors import error_response, log_error
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
# What an error message may quote of google-auth's reasons (they can carry the token's claims).
REASON_CHARS = 160
_MAX_AGE = re.compile(r"max-age=(\d+)")


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
        self.unavailable: str | None = None
        if not self.service_account:
            self.unavailable = ("PUSH_AUTH is on (the default on Cloud Run) but PUSH_SERVICE_ACCOUNT is not set: "
                                "set it to the push subscription's service account (make deploy sets "
                                "<GCP_SERVICE_ACCOUNT_NAME>-pubsub@<project>.iam.gserviceaccount.com), or "
                                "PUSH_AUTH=off if nothing but Pub/Sub can reach this service")
        try:
            from google.auth import exceptions
            from google.auth.transport.requests import Request
            from google.oauth2 import id_token
        except ImportError:
            self.unavailable = ("PUSH_AUTH is on but google-auth is not installed: install mlapi[gcs] "
                                "(or mlapi[pubsub]), or set PUSH_AUTH=off")
        else:
            self._verify_token, self._errors = id_token.verify_token, exceptions
            self._certs = CachedCerts(Request())
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
            if status == 401:
                headers.append(("WWW-Authenticate", 'Bearer realm="pubsub-push"'))
            body = dumps(error)
            start_response(f"{status} {HTTPStatus(status).phrase}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
            return [body]
        return self.app(environ, start_response)

    def check(self, environ: dict) -> dict:
        """The token's claims; raises Unauthorized (401) or PushAuthUnavailable (503)."""
        if self.unavailable:
            raise PushAuthUnavailable(self.unavailable)
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(f"POST {PUSH_PATH} needs Authorization: Bearer <OIDC token>, which a push "
                               f"subscription sends when created with --push-auth-service-account")
        audiences = [self.audience] if self.audience else request_audiences(environ)
        try:
            claims = self._verify_token(token.strip(), self._certs, audience=audiences,
                                        certs_url=GOOGLE_CERTS_URL, clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        except self._errors.TransportError as exc:
            raise PushAuthUnavailable(f"could not fetch Google's token certificates to check the push token: "
                                      f"{str(exc)[:REASON_CHARS]}") from None
        except (ValueError, TypeError, AttributeError, KeyError, self._errors.GoogleAuthError) as exc:
            # Bad signature, expired, wrong audience, malformed: google-auth says which (a crafted
            # header, e.g. a JSON list where an object belongs, fails its parsing with the others).
            raise Unauthorized(f"the push token is not valid: {str(exc)[:REASON_CHARS]}") from None
        if claims.get("iss") not in ISSUERS:
            raise Unauthorized("the push token was not issued by accounts.google.com")
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise Unauthorized("the push token is not the push subscription's service account's "
                               "(PUSH_SERVICE_ACCOUNT), or its email is not verified")
        return claims


def request_audiences(environ: dict) -> list[str]:
    """The audiences a token for this request may carry when PUSH_AUDIENCE is unset: the service's
    URL (what `make create-push-subscription` sets, as Cloud Run expects) and the push endpoint's
    full URL (Pub/Sub's default when a subscription names none). Cloud Run's front end speaks
    HTTPS and says so in X-Forwarded-Proto; the container itself sees plain HTTP."""
    scheme = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower() or environ.get(
        "wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    origin = f"{scheme}://{host}"
    return [origin, origin + environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")]


class CachedCerts:
    """A google-auth transport for GET requests of the certificates URL that keeps the answer for
    its Cache-Control max-age: verify_token fetches the certificates on every call otherwise, a
    round trip to Google per push. Other requests pass straight through."""

    def __init__(self, request: Callable):
        self.request = request
        self.lock = threading.Lock()
        self.cached: dict[str, tuple[float, object]] = {}

    def __call__(self, url: str, method: str = "GET", **kwargs):
        if method != "GET":
            return self.request(url, method=method, **kwargs)
        with self.lock:  # one fetch when many threads find the cache stale at once
            expires, response = self.cached.get(url, (0.0, None))
            if response is None or time.monotonic() >= expires:
                response = self.request(url, method="GET", timeout=CERTS_TIMEOUT_SECONDS)
                if response.status == 200:
                    self.cached[url] = (time.monotonic() + max_age(response.headers), response)
            return response


def max_age(headers) -> int:
    """Seconds the certificates may be kept (Google rotates keys but publishes the next one in
    advance, well within max-age, so a cached set never lacks a key a fresh token uses)."""
    control = next((value for name, value in (headers or {}).items() if name.lower() == "cache-control"), "")
    match = _MAX_AGE.search(control)
    return int(match.group(1)) if match else DEFAULT_CERTS_SECONDS
