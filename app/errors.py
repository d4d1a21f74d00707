"""The one error hierarchy: every error a client can see carries its HTTP status.

Input errors are 4xx, our faults are 5xx, and the two never blur. `http/errors.py` maps
this hierarchy (and werkzeug's own HTTP errors) to JSON in one place.

A 4xx message is for someone who cannot read our code: it says what was wrong AND what to
send instead ("instance 0, column 'age': 'twelve' is not a number; send a number"), and the
details name the place (instance, column) for a program to act on.
"""
from __future__ import annotations

from typing import Any

# What an error may carry, whatever a request held: a message sent back, stored (Pub/Sub
# failures) and logged must not grow with the input (10,000 unknown keys, a 10 KB model name).
MAX_MESSAGE_CHARS = 1024
MAX_SHOWN_CHARS = 100      # one value quoted in a message or a detail
MAX_DETAIL_ITEMS = 100     # items of a list detail (names, categories); `<key>_count` says how many


def shown(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """A value as a message quotes it (repr), at most `limit` characters and a note of the rest."""
    return cut(repr(value), limit)


def cut(text: str, limit: int) -> str:
    """`text` up to `limit` characters, then "…(N more)"."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text) - limit} more)"


def _bounded_details(details: dict[str, Any]) -> dict[str, Any]:
    bounded: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, str):
            value = cut(value, MAX_SHOWN_CHARS)
        elif isinstance(value, (list, tuple)):
            if len(value) > MAX_DETAIL_ITEMS:
                bounded[f"{key}_count"] = len(value)
            value = [cut(item, MAX_SHOWN_CHARS) if isinstance(item, str) else _small(item)
                     for item in value[:MAX_DETAIL_ITEMS]]
        elif isinstance(value, dict):  # an object sent where one value belonged
            value = _small(value)
        bounded.setdefault(key, value)
    return bounded


def _small(value: Any) -> Any:
    """A nested value as it is when short, else its bounded repr."""
    if isinstance(value, (list, tuple, dict)) and len(repr(value)) > MAX_SHOWN_CHARS:
        return shown(value)
    return value


class MlapiError(Exception):
    """Base class: a message for the client, an HTTP status, optional structured details.
    Both are bounded here, once, for every consumer (the response, the predictions table's
    failures, the log): see MAX_MESSAGE_CHARS."""

    status_code = 500
    # Response headers the answer must carry (WWW-Authenticate, Retry-After), whichever layer answers.
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str, **details: Any):
        message = cut(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self.details = _bounded_details(details) if details else details

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "status": self.status_code, **self.details}


class BadRequest(MlapiError):
    """The body is not valid JSON, or not of the request's shape at all."""

    status_code = 400


class Unauthorized(MlapiError):
    status_code = 401


class ApiKeyRequired(Unauthorized):
    """A route behind API_KEYS without a key, or with one that is not among them."""

    headers = (("WWW-Authenticate", 'Bearer realm="mlapi"'),)


class InvalidApiKey(ApiKeyRequired):
    """A key was given and is not one of API_KEYS: RFC 6750's invalid_token (none given: no error code)."""

    headers = (("WWW-Authenticate", 'Bearer realm="mlapi", error="invalid_token"'),)


class Forbidden(MlapiError):
    """Credentials were given and are not the ones this route takes (a wrong ADMIN_TOKEN)."""

    status_code = 403


class RateLimited(MlapiError):
    """The caller has used up a RATE_LIMIT window; the headers (Retry-After, RateLimit-*) say
    when it may call again (app/http/rate_limit.py)."""

    status_code = 429

    def __init__(self, message: str, headers: tuple[tuple[str, str], ...], **details: Any):
        super().__init__(message, **details)
        self.headers = headers


class BodyNotReceived(MlapiError):
    """The client stopped sending the body it announced: it paused longer than the server waits
    for one read (uWSGI's socket-timeout, 4 s), or closed its connection. The body is unread, so
    the connection cannot carry another request."""

    status_code = 408
    headers = (("Connection", "close"),)

    def __init__(self, reason: str):
        super().__init__(f"the request body did not arrive in full ({reason}); send the whole body without "
                         f"pausing")


class ModelNotFound(MlapiError):
    status_code = 404


class RecordNotFound(MlapiError):
    status_code = 404


class UnsupportedMediaType(MlapiError):
    status_code = 415


class InvalidInput(MlapiError):
    """Well-formed, but does not fit the model (feature count, names, types, no instances);
    details such as `instance` and `column` say where."""

    status_code = 422


class TooManyRows(MlapiError):
    """More rows in one request than MAX_ROWS: refused before any of them is converted."""

    status_code = 413


class ModelFailure(MlapiError):
    """The model's own code failed (not on input scikit-learn's validation refused), or it
    answered something that cannot be its answer (a wrong number of predictions, an infinite
    or NaN probability): a fault of the model, not of the request. The message names the
    model; the detail goes to the log, not to the client."""

    status_code = 500


class ModelNotReady(MlapiError):
    """The model is configured but failed to load (or is not loaded yet)."""

    status_code = 503


class StoreUnavailable(MlapiError):
    """A database (feature store, predictions table) cannot be reached: transient, retry."""

    status_code = 503


class ConfigurationError(MlapiError):
    """Settings that cannot work; raised at start-up, never per request."""

    status_code = 500


class ArtifactError(MlapiError):
    """An artifact could not be fetched, verified or unpickled; the model is refused."""

    status_code = 503


class RequestTimeout(MlapiError):
    """The request ran longer than REQUEST_TIMEOUT (raised in the thread serving it by the
    request pipeline's timer, app/http/pipeline.py); the worker goes on serving."""

    status_code = 504
