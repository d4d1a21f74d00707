"""The request pipeline: what every request shares, written once, around the whole app.

A WSGI middleware (werkzeug's ProxyFix and prometheus_client's make_wsgi_app are the model:
a small class wrapping an app) outside both the fast path and Flask, so no concern exists
twice and none can skip a route: the request id and log context, the request metrics, the
access log, who is calling and whether it may (API keys, http/callers.py and api_keys.py; rate
limits, http/rate_limit.py), the body limit (MAX_REQUEST_BYTES: decided here only, so the fast
path and Flask never see a body over it) and the request timeout (REQUEST_TIMEOUT).

The inner layers report which route answered through the WSGI environ (`ROUTE_KEY`), so the
metrics carry Flask's rule strings without this layer knowing the URL map.
"""
from __future__ import annotations

import io
import logging
import select
import time
from typing import Callable, Iterable

from werkzeug.exceptions import ClientDisconnected

from mlapi import metrics
from mlapi.errors import ApiKeyRequired, BadRequest, BodyNotReceived, MlapiError, RateLimited, RequestTimeout, cut
from mlapi.http.callers import CALLER_KEY, Callers
from mlapi.http.deadline import Deadlines
from mlapi.http.errors import error_response, start_json
from mlapi.http.rate_limit import EXEMPT_PATHS, RateLimits
from mlapi.logs import begin_request, current_request_id, end_request
from mlapi.protocols.jsonio import dumps
from mlapi.serving.call_log import CURRENT_CALL

log = logging.getLogger("mlapi.access")

# environ key through which the fast path or Flask names the route rule that answered.
ROUTE_KEY = "mlapi.route"
UNMATCHED = "<unmatched>"


class BodyTooLarge(MlapiError):
    """A body over MAX_REQUEST_BYTES, refused before it is read (or as soon as a chunked one passes it)."""

    status_code = 413

    def __init__(self, limit: int):
        super().__init__(f"request body too large: the limit is {limit} bytes (MAX_REQUEST_BYTES); send fewer "
                         f"instances per request, or raise MAX_REQUEST_BYTES on the server")


class BadContentLength(BadRequest):
    """A Content-Length that is not a decimal number: the body's size is unknown, so the limit
    cannot be checked and the request is refused rather than read."""

    def __init__(self, declared: str):
        super().__init__(f"Content-Length must be a decimal number of bytes, not {cut(repr(declared), 40)}")


class RequestPipeline:
    def __init__(self, app: Callable, access_log: bool, max_body_bytes: int | None = None,
                 timeout_seconds: float | None = None, callers: Callers | None = None,
                 rate_limits: RateLimits | None = None):
        self.app = app
        self.callers = callers or Callers(0, None)
        self.rate_limits = rate_limits
        self.access_log = access_log
        self.max_body_bytes = max_body_bytes
        self.deadlines = Deadlines(timeout_seconds) if timeout_seconds else None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        token = begin_request(environ.get("HTTP_X_REQUEST_ID"), environ.get("HTTP_X_CLOUD_TRACE_CONTEXT"))
        model_token = metrics.current_model.set(None)  # the inference core names the model it resolves
        call_token = CURRENT_CALL.set(None)  # _answer names the caller; reset after, as the model is
        request_id = current_request_id()
        answered: list = []

        def respond(status: str, headers: list, exc_info=None):
            headers.append(("X-Request-ID", request_id))
            answered[:] = [status, headers]
            return start_response(status, headers, exc_info)

        status = 500  # unless the app answers: an exception escaping it is the server's 500
        try:
            body = None
            try:
                if self.deadlines is None:
                    body = self._answer(environ, respond)
                else:
                    # Armed before the body is read: a chunked body trickled in is cut too.
                    armed = self.deadlines.start()
                    try:
                        body = self._answer(environ, respond)
                    finally:
                        self.deadlines.stop(armed)
            except (RequestTimeout, BodyTooLarge, BadContentLength, BodyNotReceived, ApiKeyRequired,
                    RateLimited) as exc:
                # Raised before the app is called (caller checks, limit_body), or anywhere inside
                # it by the timer: a JSON answer like every other error's, unless the app had
                # already begun its own.
                if answered:
                    if body is not None and isinstance(exc, RequestTimeout):
                        return body  # the timer fired as the request ended: its answer stands
                    raise
                body = self._refuse(exc, environ, respond)
            if answered:
                status = int(answered[0][:3])
            return body
        finally:
            elapsed = time.perf_counter() - started
            metrics.record_request(environ.get(ROUTE_KEY, UNMATCHED), environ.get("REQUEST_METHOD", ""),
                                   status, elapsed)
            if self.access_log:
                self._log_access(environ, status, answered[1] if answered else [], elapsed)
            metrics.current_model.reset(model_token)
            CURRENT_CALL.reset(call_token)  # nothing after this request logs a call as its caller's
            end_request(token)

    def _answer(self, environ: dict, respond: Callable) -> Iterable[bytes]:
        # Who, then whether they may, then the body: a caller without a key learns nothing more
        # of a route than its 401, and none of these reads the body.
        try:
            caller = self.callers.identify(environ)
        except ApiKeyRequired:
            # A client without a valid key is limited by its address (a key guesser, a flood of
            # 401s), before its 401 and still without reading the body.
            if self.rate_limits is not None:
                self.rate_limits.check(self.callers.address(environ))
            raise
        CURRENT_CALL.set((caller, environ.get("PATH_INFO", "")))  # for the call log (serving/call_log.py)
        if self.rate_limits is not None and environ.get("PATH_INFO") not in EXEMPT_PATHS:
            self.rate_limits.check(caller)
        if self.max_body_bytes is not None:
            limit_body(environ, self.max_body_bytes)
        return self.app(environ, respond)

    def _refuse(self, exc: Exception, environ: dict, respond: Callable) -> list[bytes]:
        status, error, headers = error_response(exc)
        if isinstance(exc, RequestTimeout):  # a slow model is the operator's to know about
            log.warning("%s %s → 504 after %ss (REQUEST_TIMEOUT)", environ.get("REQUEST_METHOD", ""),
                        environ.get("PATH_INFO", ""), self.deadlines.seconds if self.deadlines else "?")
        body = dumps(error)
        # The body is unread (401, 413, 429) or maybe half read (504): this connection cannot
        # carry another request.
        closing = () if any(name == "Connection" for name, _ in headers) else (("Connection", "close"),)
        start_json(respond, status, body, (*closing, *headers))
        if status not in (408, 504) and environ.get("uwsgi.version") is not None:  # 408: nothing comes
            return _DrainAfter([body], environ)
        return [body]

    @staticmethod
    def _log_access(environ: dict, status: int, headers: list, elapsed: float) -> None:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        size = next((value for name, value in headers if name.lower() == "content-length"), "0")
        # Cloud Logging's HttpRequest fields, so the console shows the line as a request.
        # The caller is a key's id or an address, never a key.
        log.info("%s %s %s %s", method, path, status, environ.get(CALLER_KEY, "-"), extra={"http_request": {
            "requestMethod": method, "requestUrl": path, "status": status, "responseSize": size,
            "userAgent": environ.get("HTTP_USER_AGENT", ""), "remoteIp": environ.get("REMOTE_ADDR"),
            "latency": f"{elapsed:.6f}s", "protocol": environ.get("SERVER_PROTOCOL")}})


class _DrainAfter(list):
    """The answer, then, once it is sent (WSGI's close), a short read of the unread body.

    Under uWSGI's HTTP router a worker that closes with a body still arriving makes the router
    drop the session, answer and all: a client that sends its whole body before reading (most
    do) saw the connection reset instead of its 413. So the worker reads on, discarding, for
    at most DRAIN_SECONDS: the answer has reached the router by then, which relays it while the
    client finishes sending. gunicorn and granian close gracefully on their own."""

    DRAIN_SECONDS = 1.0

    def __init__(self, body: list[bytes], environ: dict):
        super().__init__(body)
        self.environ = environ

    def close(self) -> None:
        if not declares_body(self.environ):
            return
        stream = self.environ["wsgi.input"]
        deadline = time.monotonic() + self.DRAIN_SECONDS
        connection = _uwsgi_connection_fd()
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                # A read blocks until data comes or uWSGI's socket-timeout (4 s): wait for data
                # only as long as the drain may last, so a client that declares a body and sends
                # none (a 401 or 429 flood) holds the worker DRAIN_SECONDS, not seconds more.
                if connection is not None and not select.select([connection], [], [], remaining)[0]:
                    break
                if not stream.read(65536):
                    break
        except (OSError, ValueError):
            pass  # the client went away: nothing left to drain


def declares_body(environ: dict) -> bool:
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or chunked(environ)


def chunked(environ: dict) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def _uwsgi_connection_fd() -> int | None:
    try:
        import uwsgi

        return uwsgi.connection_fd()
    except (ImportError, AttributeError, SystemError, OSError):
        return None


def read_body(read: Callable[..., bytes], *args, **kwargs) -> bytes:
    """`read(*args, **kwargs)` of the request's body, where a client that stops sending it is a
    408 (BodyNotReceived), not the OSError the server raises: uWSGI's "timeout during read(N) on
    wsgi.input" after a pause of its socket-timeout, or an error once the client has closed.
    Flask's request reads through werkzeug, which turns that OSError (or a body shorter than its
    Content-Length) into its ClientDisconnected: the same 408."""
    try:
        return read(*args, **kwargs)
    except OSError as exc:
        raise BodyNotReceived(str(exc) or type(exc).__name__) from None
    except ClientDisconnected as exc:
        raise BodyNotReceived(str(exc.__context__ or "the body ended before its Content-Length")) from None


def limit_body(environ: dict, limit: int) -> None:
    """Refuse a body over `limit` bytes before anything reads it (a declared Content-Length), or
    as soon as reading passes it (a chunked body, whose size nobody knows in advance). A chunked
    body within the limit is read here and handed on as if it had come with a Content-Length,
    so the layers inside (the fast path, Flask) read every body the same way."""
    declared = environ.get("CONTENT_LENGTH")
    if declared:
        # Read here once, for every layer inside: what the server passed on may keep the header's
        # optional whitespace (uWSGI does: "2115 "), which int() and werkzeug accept but a check
        # that let it pass unchecked did not; and int() also takes "+2115" and "2_115". Only
        # ASCII digits are a length ("²" is a digit to str.isdigit and not to int()).
        digits = declared.strip(" \t")
        if not (digits.isascii() and digits.isdigit()):
            raise BadContentLength(declared)
        if int(digits) > limit:
            raise BodyTooLarge(limit)
        environ["CONTENT_LENGTH"] = digits
        return
    if not chunked(environ):
        return
    body = read_body(read_chunked, environ, limit + 1)
    if len(body) > limit:
        raise BodyTooLarge(limit)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input_terminated"] = True
    del environ["HTTP_TRANSFER_ENCODING"]


def read_chunked(environ: dict, most: int) -> bytes:
    """At most `most` bytes of a chunked body, decoded. gunicorn and granian decode chunks in
    wsgi.input; uWSGI's wsgi.input sees no body without a Content-Length, and its own API reads
    the chunks (uwsgi.chunked_read: one chunk per call, b"" after the last)."""
    parts: list[bytes] = []
    size = 0
    if environ.get("uwsgi.version") is not None:
        import uwsgi

        read = uwsgi.chunked_read
    else:
        stream = environ["wsgi.input"]

        def read() -> bytes:
            return stream.read(min(65536, most - size))
    while size < most:
        part = read()
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)
