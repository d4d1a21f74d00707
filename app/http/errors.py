"""The one place an exception becomes an HTTP answer: `{"error": {"message", "status", ...}}`.

`error_response` is a pure function (exception → status, body, headers) used by the fast path
and by Flask's error handlers alike, so an error looks the same whichever layer answered it.
Our hierarchy (mlapi.errors) carries its own status; werkzeug's HTTP errors (404 route, 405, 413)
keep theirs; anything else is a bug: a JSON 500, with the traceback logged by `log_error`.
"""
from __future__ import annotations

import logging
from typing import Any

from werkzeug.exceptions import HTTPException

from mlapi.errors import MlapiError

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]


def error_response(exc: BaseException, body_limit: int | None = None) -> tuple[int, dict[str, Any], Headers]:
    """(status, JSON body, extra headers) for an exception raised while answering a request."""
    if isinstance(exc, MlapiError):
        return exc.status_code, {"error": exc.to_dict()}, []
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        error: dict[str, Any] = {"message": exc.description or exc.name, "status": status}
        headers: Headers = []
        if status == 405 and exc.valid_methods:
            error["allowed_methods"] = sorted(exc.valid_methods)
            headers.append(("Allow", ", ".join(sorted(exc.valid_methods))))
        if status == 413:
            error["message"] = f"request body too large: the limit is {body_limit} bytes (MAX_REQUEST_BYTES)"
        return status, {"error": error}, headers
    return 500, {"error": {"message": "internal server error", "status": 500,
                           "type": exc.__class__.__name__}}, []


def log_error(exc: BaseException, method: str, path: str) -> None:
    """Our faults are logged (a bug with its traceback); the client's are not."""
    if isinstance(exc, MlapiError):
        if exc.status_code >= 500:
            log.error("%s %s → %s: %s", method, path, exc.status_code, exc.message)
    elif not isinstance(exc, HTTPException):
        log.error("unhandled error on %s %s", method, path, exc_info=exc)
