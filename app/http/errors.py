"""The one place an exception becomes an HTTP answer: `{"error": {"message", "status", ...}}`.

`error_response` is a pure function (exception → status, body, headers) used by the fast path
and by Flask's error handlers alike, so an error looks the same whichever layer answered it.
Our hierarchy (mlapi.errors) carries its own status; werkzeug's HTTP errors (404 route, 405)
keep theirs; anything else is a bug: a JSON 500, with the traceback logged by `log_error`.
`start_json` (with `STATUS_LINES`) is the one way the layers that answer below Flask (the request
pipeline, the fast path, the push token check) start an answer.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from mlapi.errors import MlapiError

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]


class _StatusLines(dict):
    """status code → "404 Not Found"; a code HTTPStatus does not name still gets a line."""

    def __missing__(self, status: int) -> str:
        return f"{status} Error"


# A dict, not a function: the fast path looks its 200 up on every request.
STATUS_LINES = _StatusLines({status.value: f"{status.value} {status.phrase}" for status in HTTPStatus})


def start_json(start_response, status: int, body: bytes, headers: Headers | tuple = ()) -> None:
    """Begin a JSON answer of `body`: how the layers below Flask (the request pipeline, the fast
    path, the push token check) start every answer of theirs."""
    start_response(STATUS_LINES[status],
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])


def error_response(exc: BaseException, docs_served: bool = False) -> tuple[int, dict[str, Any], Headers]:
    """(status, JSON body, extra headers) for an exception raised while answering a request.
    docs_served: GET /openapi.json is there to point to (API_DOCS on)."""
    if isinstance(exc, MlapiError):
        return exc.status_code, {"error": exc.to_dict()}, list(exc.headers)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        error: dict[str, Any] = {"message": _http_message(exc, status, docs_served), "status": status}
        headers: Headers = []
        if status == 405 and exc.valid_methods:
            error["allowed_methods"] = sorted(exc.valid_methods)
            headers.append(("Allow", ", ".join(sorted(exc.valid_methods))))
        return status, {"error": error}, headers
    return 500, {"error": {"message": "internal server error", "status": 500,
                           "type": exc.__class__.__name__}}, []


# Where a client who reached a wrong URL can read on.
ROUTES_HINT = ("the prediction routes are POST /predict, POST /models/<name>/predict and "
               "POST /models/<name>/versions/<version>/predict; GET /models lists the models")
# Only where it is served: with API_DOCS=off it is a 404 too.
DOCS_HINT = " and GET /openapi.json every route"


def _http_message(exc: HTTPException, status: int, docs_served: bool) -> str:
    """werkzeug's routing errors, saying what to send instead (its own words say only what failed)."""
    if status == 404 and exc.description == NotFound.description:
        return f"not found: no route answers this URL; {ROUTES_HINT}{DOCS_HINT if docs_served else ''}"
    if status == 405 and exc.valid_methods and exc.description == MethodNotAllowed.description:
        # HEAD and OPTIONS come with every GET / any route: not what anyone means to send.
        methods = sorted(set(exc.valid_methods) - {"HEAD", "OPTIONS"}) or sorted(exc.valid_methods)
        body = " with a JSON body" if methods == ["POST"] else ""
        return f"method not allowed: send {' or '.join(methods)}{body} to this URL"
    return exc.description or exc.name


def log_error(exc: BaseException, method: str, path: str) -> None:
    """Our faults are logged (a bug with its traceback); the client's are not."""
    if isinstance(exc, MlapiError):
        if exc.status_code >= 500:
            log.error("%s %s → %s: %s", method, path, exc.status_code, exc.message)
    elif not isinstance(exc, HTTPException):
        log.error("unhandled error on %s %s", method, path, exc_info=exc)
