"""Per-request plumbing: X-Request-ID, the trace id, request metrics, optional access log,
and GET /metrics (Prometheus text format; never rate limited; optionally behind a token)."""
from __future__ import annotations

import hmac
import logging
import time

from flask import Blueprint, Flask, Response, current_app, g, request

from mlapi import metrics
from mlapi.errors import Unauthorized
from mlapi.logs import begin_request, current_request_id, end_request

log = logging.getLogger("mlapi.access")


def register(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_forget)
    app.register_blueprint(blueprint)


def _start() -> None:
    g.request_token = begin_request(request.headers.get("X-Request-ID"),
                                    request.headers.get("X-Cloud-Trace-Context"))
    g.started = time.perf_counter()
    metrics.current_model.set(None)


def _forget(_exc) -> None:
    token = g.pop("request_token", None)
    if token is not None:
        end_request(token)


def _finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = current_request_id()
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
