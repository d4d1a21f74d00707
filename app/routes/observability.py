"""Per-request plumbing: X-Request-ID, the trace id, request metrics, optional access log,
and GET /metrics (Prometheus text format; never rate limited; optionally behind a token)."""
from __future__ import annotations

import hmac
import logging
import re
import time
import uuid

from flask import Blueprint, Flask, Response, current_app, g, request

from app import metrics
from app.errors import Unauthorized

log = logging.getLogger("app.access")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def register(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.register_blueprint(blueprint)


def _start() -> None:
    given = request.headers.get("X-Request-ID", "")
    # Echo a caller's id only if it is harmless in logs and headers; else make our own.
    g.request_id = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
    # X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS
    g.trace_id = request.headers.get("X-Cloud-Trace-Context", "").split("/", 1)[0] or None
    g.started = time.perf_counter()
    metrics.current_model.set(None)


def _finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    metrics.record_request(route, request.method, response.status_code, elapsed)
    if current_app.extensions["mlapi.settings"].access_log:
        log.info("%s %s %s", request.method, request.path, response.status_code, extra={"http_request": {
            "requestMethod": request.method, "requestUrl": request.path, "status": response.status_code,
            "responseSize": str(response.calculate_content_length() or 0), "userAgent": request.user_agent.string,
            "remoteIp": request.remote_addr, "latency": f"{elapsed:.6f}s", "protocol": request.environ.get("SERVER_PROTOCOL")}})
    return response


blueprint = Blueprint("observability", __name__)


@blueprint.get("/metrics")
def prometheus_metrics():
    token = current_app.extensions["mlapi.settings"].metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("GET /metrics needs Authorization: Bearer <METRICS_TOKEN>")
    return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")
