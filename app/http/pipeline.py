"""The request pipeline: what every request shares, written once, around the whole app.

A WSGI middleware (werkzeug's ProxyFix and prometheus_client's make_wsgi_app are the model:
a small class wrapping an app) outside both the fast path and Flask, so no concern exists
twice and none can skip a route: the request id and log context, the request metrics and the
access log. Authentication, rate limits and caching headers belong here too, in front of the
inner app.

The inner layers report which route answered through the WSGI environ (`ROUTE_KEY`), so the
metrics carry Flask's rule strings without this layer knowing the URL map.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from mlapi import metrics
from mlapi.logs import begin_request, current_request_id, end_request

log = logging.getLogger("mlapi.access")

# environ key through which the fast path or Flask names the route rule that answered.
ROUTE_KEY = "mlapi.route"
UNMATCHED = "<unmatched>"


class RequestPipeline:
    def __init__(self, app: Callable, access_log: bool):
        self.app = app
        self.access_log = access_log

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        token = begin_request(environ.get("HTTP_X_REQUEST_ID"), environ.get("HTTP_X_CLOUD_TRACE_CONTEXT"))
        model_token = metrics.current_model.set(None)  # the inference core names the model it resolves
        request_id = current_request_id()
        answered: list = []

        def respond(status: str, headers: list, exc_info=None):
            headers.append(("X-Request-ID", request_id))
            answered[:] = [status, headers]
            return start_response(status, headers, exc_info)

        status = 500  # unless the app answers: an exception escaping it is the server's 500
        try:
            body = self.app(environ, respond)
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
            end_request(token)

    @staticmethod
    def _log_access(environ: dict, status: int, headers: list, elapsed: float) -> None:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        size = next((value for name, value in headers if name.lower() == "content-length"), "0")
        # Cloud Logging's HttpRequest fields, so the console shows the line as a request.
        log.info("%s %s %s", method, path, status, extra={"http_request": {
            "requestMethod": method, "requestUrl": path, "status": status, "responseSize": size,
            "userAgent": environ.get("HTTP_USER_AGENT", ""), "remoteIp": environ.get("REMOTE_ADDR"),
            "latency": f"{elapsed:.6f}s", "protocol": environ.get("SERVER_PROTOCOL")}})
