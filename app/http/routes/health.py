"""Liveness, readiness and model metadata."""
from __future__ import annotations

from flask import Blueprint

from mlapi.errors import StoreUnavailable
from mlapi.http.routes.common import json_response, services

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    # Liveness only: the process answers. Whether models loaded is /readyz's question.
    return json_response({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    registry = services().inference.registry
    failures = [failure.describe() for failure in registry.failures()]
    models = [f"{m.name}:{m.version}" for m in registry.models()]
    if not models and not failures:
        failures.append({"error": "no model is configured"})
    stores = {}
    for name, store in (("feature_store", services().inference.store), ("predictions_db", services().predictions)):
        try:
            store.ping()
            stores[name] = "ok"
        except StoreUnavailable as exc:
            stores[name] = exc.message
            failures.append({"store": name, "error": exc.message})
    if failures:
        return json_response({"status": "unavailable", "ready": models, "stores": stores, "failures": failures}, 503)
    return json_response({"status": "ok", "ready": models, "stores": stores})


@blueprint.get("/models")
def list_models():
    return json_response({"default": services().inference.registry.default_model,
                          "models": [entry.describe() for entry in services().inference.registry.entries()]})


@blueprint.get("/models/<name>")
def describe_model(name: str):
    registry = services().inference.registry
    versions = [entry.describe() for entry in registry.entries(name)]
    return json_response({"name": name, "default_version": registry.default_version(name), "versions": versions})


@blueprint.get("/models/<name>/versions/<version>")
def describe_version(name: str, version: str):
    registry = services().inference.registry
    for entry in registry.entries(name):
        described = entry.describe()
        if described["version"] == version:
            return json_response(described)
    registry.get(name, version)  # raises the 404 with the list of versions
