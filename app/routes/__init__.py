"""Thin Flask blueprints, one per protocol: decode → call the inference service → encode."""
from __future__ import annotations

from flask import Flask


def register_routes(app: Flask) -> None:
    from app.routes import byid, errors, health, native, observability, pubsub, speedrun

    errors.register(app)
    observability.register(app)
    for module in (health, native, speedrun, byid, pubsub):
        app.register_blueprint(module.blueprint)
