"""The one place errors become JSON: `{"error": {"message", "status", ...}}`.

Our hierarchy (app.errors) carries its own status; werkzeug's HTTP errors (404 route, 405,
413) keep theirs; anything else is a bug: a JSON 500 with the traceback in the log, and the
worker keeps serving.
"""
from __future__ import annotations

import logging

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from mlapi.errors import MlapiError
from mlapi.http.routes.common import json_response

log = logging.getLogger("mlapi.errors")


def register(app: Flask) -> None:
    @app.errorhandler(MlapiError)
    def handle_mlapi_error(exc: MlapiError):
        if exc.status_code >= 500:
            log.error("%s %s → %s: %s", request.method, request.path, exc.status_code, exc.message)
        return json_response({"error": exc.to_dict()}, exc.status_code)

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        body = {"message": exc.description or exc.name, "status": exc.code}
        if exc.code == 405 and exc.valid_methods:
            body["allowed_methods"] = sorted(exc.valid_methods)
        if exc.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            body["message"] = f"request body too large: the limit is {limit} bytes (MAX_REQUEST_BYTES)"
        response = json_response({"error": body}, exc.code or 500)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def handle_bug(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": {"message": "internal server error", "status": 500,
                                        "type": exc.__class__.__name__}}, 500)
