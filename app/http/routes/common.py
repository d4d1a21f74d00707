"""What the Flask views share: the services, the JSON body, JSON responses, and JsonBlueprint,
whose JSON POST routes the fast path (http/fastpath.py) answers too, with the same handler."""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Response, current_app, request

from mlapi.errors import UnsupportedMediaType
from mlapi.protocols.jsonio import dumps, parse_json


def services():
    """The app's Services (mlapi.services.build_services)."""
    return current_app.extensions["mlapi.services"]


def json_body() -> dict:
    """The request's JSON object; 415 for another content type, 400 for anything malformed."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}")
    return parse_json(request.get_data(cache=False))  # get_data raises 413 past MAX_CONTENT_LENGTH


def json_response(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json")


class JsonBlueprint(Blueprint):
    """A Blueprint whose JSON POST routes are plain handlers: (services, body, **URL variables)
    → a JSON-able answer. Each is a Flask view and is listed in `json_routes`, from which the
    app factory registers it on the fast path: one handler, two ways in, the same answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.json_routes: list[tuple[str, Callable]] = []

    def post_json(self, *rules: str):
        def decorator(handler: Callable) -> Callable:
            def view(**params):
                return json_response(handler(services(), json_body(), **params))

            for rule in rules:
                self.add_url_rule(rule, handler.__name__, view, methods=["POST"])
                self.json_routes.append(((self.url_prefix or "") + rule, handler))
            return handler
        return decorator
