"""GET /metrics: Prometheus text format, summed over the server's workers; optionally behind a
token, and in production only behind one (`served`). (The request metrics themselves are
recorded by http/pipeline.py.)"""
from __future__ import annotations

from flask import Blueprint, Response, request

from mlapi import metrics
from mlapi.errors import Unauthorized
from mlapi.http.auth import authorized
from mlapi.http.routes.common import documented, services

blueprint = Blueprint("metrics", __name__)


def served(settings) -> bool:
    """Whether the route exists: in production (ENVIRONMENT=production, the default on Cloud
    Run) only with a METRICS_TOKEN, else it is a 404 like API_DOCS=off's routes. The metrics
    name every model, route and status and count the traffic: no business of any caller."""
    return bool(settings.metrics_token) or not settings.production


@blueprint.get("/metrics")
@documented("text/plain", errors=(401, 404), tag="health")  # 404: production without METRICS_TOKEN
def prometheus_metrics():
    """Prometheus metrics, summed over the server's workers (401 without the METRICS_TOKEN if one is set;
    in production only served with one)"""
    token = services().settings.metrics_token
    if token and not authorized(request.headers.get("Authorization", ""), token):
        raise Unauthorized("GET /metrics needs Authorization: Bearer <METRICS_TOKEN>")
    return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")
