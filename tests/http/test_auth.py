"""The one token check (app/http/auth.py) behind GET /metrics and the API docs: the same
header is accepted or refused by both, with Basic where a browser needs it (the docs). And what
a caller without one may see in production (ENVIRONMENT=production, the default on Cloud Run)
and in development."""
import base64

import pytest

from conftest import models_env


@pytest.fixture
def guarded(make_app, trained):
    return make_app(MODELS=models_env(trained, "cancer"), METRICS_TOKEN="s3cret",
                    API_DOCS_TOKEN="s3cret").test_client()


def basic(userpass: bytes) -> str:
    return "Basic " + base64.b64encode(userpass).decode()


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret ", " Bearer s3cret"])
def test_a_bearer_token_opens_both_whatever_the_schemes_case(guarded, header):
    # RFC 7235: the scheme is case-insensitive; /metrics once wanted "Bearer " exactly
    for path in ("/metrics", "/openapi.json"):
        assert guarded.get(path, headers={"Authorization": header}).status_code == 200, (path, header)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer wrong", "Bearer s3cret2", "Token s3cret", "s3cret",
                                    basic(b"anyone:wrong"), "Basic !!notbase64"])
def test_anything_else_is_refused_by_both(guarded, header):
    for path in ("/metrics", "/openapi.json"):
        assert guarded.get(path, headers={"Authorization": header}).status_code == 401, (path, header)


def test_basic_is_for_the_docs_a_browser_opens_not_for_metrics(guarded):
    header = {"Authorization": basic(b"anyone:s3cret")}
    assert guarded.get("/openapi.json", headers=header).status_code == 200
    assert guarded.get("/metrics", headers=header).status_code == 401


# ---- what an anonymous caller may see, by environment (docs/security.md's table) -------------
@pytest.fixture
def served_in(make_app, trained, tmp_path):
    """A client of the app in `environment`, serving cancer and a model whose file is missing."""
    def build(environment, **env):
        missing = tmp_path / "artifacts" / "gone.joblib"
        return make_app(MODELS=f"{models_env(trained, 'cancer')},gone={missing}", ENVIRONMENT=environment,
                        **env).test_client()
    return build


def keys_of(value) -> set:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_of(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_of(item)}
    return set()


def test_production_serves_metrics_only_behind_a_token(served_in):
    production = served_in("production")
    assert production.get("/metrics").status_code == 404
    guarded = served_in("production", METRICS_TOKEN="s3cret")
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert served_in("development").get("/metrics").status_code == 200  # make run: open, for a newcomer


def test_production_shows_no_artifact_location_internals_or_load_error(served_in, trained, tmp_path):
    client = served_in("production")
    paths = [str(tmp_path), str(trained["cancer"][0].parent)]
    for route in ("/models", "/models/cancer", "/models/cancer/versions/1", "/models/gone", "/readyz"):
        answer = client.get(route)
        body = answer.get_data(as_text=True)
        assert not any(path in body for path in paths), (route, body)
        assert not keys_of(answer.get_json()) & {"uri", "compute_path", "estimator", "steps", "sklearn_version"}
    [cancer] = client.get("/models/cancer").get_json()["versions"]
    assert cancer["ready"] and cancer["task"] == "classification" and cancer["classes"] == [0, 1]
    assert cancer["n_features_in"] == 30 and len(cancer["sha256"]) == 64  # what a caller needs, and the pin
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["ready"] == ["cancer:1"]
    [gone] = [f for f in ready.get_json()["failures"] if f.get("name") == "gone"]
    assert gone == {"name": "gone", "version": "1", "format": "joblib", "ready": False,
                    "error": "failed to load: the server's log says why"}
    assert client.get("/openapi.json").status_code == 404  # API_DOCS: off in production unless asked
    # A predict route's 503 for the model that failed says so without the reason (its path)
    refused = client.post("/models/gone/predict", json={"instances": [[0.0] * 30]})
    assert refused.status_code == 503 and "failed to load: the server's log says why" in refused.get_json()["error"]["message"]
    assert not any(path in refused.get_data(as_text=True) for path in paths)


def test_development_shows_everything(served_in, trained, tmp_path):
    client = served_in("development")
    [cancer] = client.get("/models/cancer").get_json()["versions"]
    assert cancer["uri"] == str(trained["cancer"][0]) and cancer["estimator"] == "Pipeline" and cancer["compute_path"]
    [gone] = [f for f in client.get("/readyz").get_json()["failures"] if f.get("name") == "gone"]
    assert gone["uri"] == str(tmp_path / "artifacts" / "gone.joblib") and "gone.joblib" in gone["error"]
    refused = client.post("/models/gone/predict", json={"instances": [[0.0] * 30]})
    assert refused.status_code == 503 and "gone.joblib" in refused.get_json()["error"]["message"]
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("env, production, docs", [
    ({}, False, True),
    ({"K_SERVICE": "mlapi"}, True, False),                               # Cloud Run
    ({"K_SERVICE": "mlapi", "ENVIRONMENT": "development"}, False, True),
    ({"ENVIRONMENT": "production"}, True, False),                        # elsewhere, said
    ({"ENVIRONMENT": "production", "API_DOCS": "on"}, True, True),
])
def test_the_environment_and_its_api_docs_default(env, production, docs):
    from mlapi.config import Settings

    settings = Settings.from_env(env)
    assert (settings.production, settings.api_docs) == (production, docs)
