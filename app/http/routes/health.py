"""Liveness, readiness and model metadata.

In production (ENVIRONMENT=production, the default on Cloud Run) an anonymous caller sees what
calling a model needs (its name, version, task, inputs, classes, sha256) but not where its
artifact lives, how it is built or why it failed to load (an exception's text names paths):
those stay in the server's log. In development every route shows everything, for the newcomer.
The per-route table is docs/security.md's.
"""
from __future__ import annotations

from flask import Blueprint

from mlapi.errors import StoreUnavailable
from mlapi.http.routes.common import documented, json_response, services
from mlapi.protocols.response_bodies import Health, ModelDescription, ModelList, ModelVersions, Readiness
from mlapi.serving.registry import LOAD_FAILED

blueprint = Blueprint("health", __name__)

# What a model's description says beyond its interface: where its artifact lives, what it is
# built of and with, how it is computed. Hidden in production.
INTERNALS = ("uri", "estimator", "steps", "has_feature_step", "compute_path", "sklearn_version",
             "serving_sklearn_version", "load_seconds")


def described(entry) -> dict:
    """A ServedModel's or LoadFailure's description, as much of it as this environment shows."""
    description = entry.describe()
    if not services().settings.production:
        return description
    shown = {key: value for key, value in description.items() if key not in INTERNALS}
    if "error" in shown:
        shown["error"] = LOAD_FAILED
    return shown


@blueprint.get("/healthz")
@documented(Health, tag="health")
def healthz():
    """Liveness: the process answers"""
    # Liveness only: the process answers. Whether models loaded is /readyz's question.
    return json_response({"status": "ok"})


@blueprint.get("/startupz")
@documented(Readiness, other_answers={503: Readiness}, tag="health")
def startupz():
    """Start-up: every model loaded (no store is asked: `stores` is empty; 503 names the models that are not)"""
    # Cloud Run's startup probe (make deploy): a revision whose model failed to load never takes
    # requests. Unlike /readyz it pings no database, or a database outage would stop every start.
    registry = services().inference.registry
    models = [f"{m.name}:{m.version}" for m in registry.models()]
    failures = [{"model": f"{f.spec.name}:{f.spec.version}", "error": LOAD_FAILED}
                for f in registry.failures()]
    if failures or not models:
        return json_response({"status": "unavailable", "ready": models, "stores": {},
                              "failures": failures or [{"error": "no model is configured"}]}, 503)
    return json_response({"status": "ok", "ready": models, "stores": {}})


@blueprint.get("/readyz")
@documented(Readiness, other_answers={503: Readiness}, tag="health")
def readyz():
    """Readiness: every model loaded and every store answering (503 names what is not)"""
    registry = services().inference.registry
    failures = [described(failure) for failure in registry.failures()]
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
@documented(ModelList)
def list_models():
    """The served models and versions, the default model, and the reload generation"""
    registry = services().inference.registry
    return json_response({"default": registry.default_model, "generation": registry.generation,
                          "models": [described(entry) for entry in registry.entries()]})


@blueprint.get("/models/<name>")
@documented(ModelVersions, errors=(404,))
def describe_model(name: str):
    """A model's versions, and the one served by default"""
    registry = services().inference.registry
    versions = [described(entry) for entry in registry.entries(name)]
    return json_response({"name": name, "default_version": registry.default_version(name), "versions": versions})


@blueprint.get("/models/<name>/versions/<version>")
@documented(ModelDescription, errors=(404,))
def describe_version(name: str, version: str):
    """One model version: task, input kind, classes, features, and which code computes it"""
    registry = services().inference.registry
    for entry in registry.entries(name):
        if entry.describe()["version"] == version:
            return json_response(described(entry))
    registry.get(name, version)  # raises the 404 with the list of versions
