"""Thin Flask blueprints, one per protocol: decode → call the inference service → encode."""
from __future__ import annotations

from flask import Flask


def register_routes(app: Flask) -> None:
    from mlapi.http.routes import entity, errors, health, native, observability, pubsub, text

    errors.register(app)
    observability.register(app)
    for module in (health, native, text, entity, pubsub):
        app.register_blueprint(module.blueprint)
