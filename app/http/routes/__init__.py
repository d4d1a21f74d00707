"""Thin Flask blueprints, one per protocol: decode → call the inference service → encode.

`register_routes` puts every blueprint on the app, every JSON route of a JsonBlueprint on the
fast path too, and maps every exception to JSON through http/errors.py (the function the fast
path uses).
"""
from __future__ import annotations

from flask import Flask, request

from mlapi.http.errors import error_response, log_error
from mlapi.http.fastpath import FastPath
from mlapi.http.pipeline import ROUTE_KEY
from mlapi.http.routes.common import json_response


def register_routes(app: Flask, fast: FastPath) -> None:
    from mlapi.http.routes import admin, call_log, entity, health, metrics, native, openapi, pubsub, text

    settings = app.extensions["mlapi.services"].settings
    for module in (health, native, text, entity, call_log, pubsub, metrics):
        if module is metrics and not metrics.served(settings):
            continue  # in production without METRICS_TOKEN: a 404
        app.register_blueprint(module.blueprint)
        for rule, handler in getattr(module.blueprint, "json_routes", ()):
            fast.add(rule, handler)
    if admin.served(settings):
        admin.register(app)  # POST /admin/reload; without ADMIN_TOKEN a 404
    openapi.register(app)  # GET /openapi.json and /docs, unless API_DOCS=off
    docs_served = settings.api_docs

    @app.before_request
    def name_the_route() -> None:
        # The pipeline labels the request metrics with the rule that answered.
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    @app.errorhandler(Exception)
    def answer_error(exc: Exception):
        log_error(exc, request.method, request.path)
        status, body, headers = error_response(exc, docs_served=docs_served)
        response = json_response(body, status)
        response.headers.extend(headers)
        return response
