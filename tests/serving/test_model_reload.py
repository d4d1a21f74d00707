"""A reload in one process (serving/reload.py, the admin route through the app factory, the
settings): what is swapped, what is kept, and who may ask. The real servers, their workers and
the fleet: tests/server/test_reload.py."""
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlapi.config import Settings
from mlapi.errors import ConfigurationError

TOKEN = "reload-token-0123456789abcdef"
CANCER = load_breast_cancer()
ROWS = CANCER.data[:10]


@pytest.fixture(scope="module")
def estimators():
    return (make_pipeline(StandardScaler(), LogisticRegression()).fit(CANCER.data, CANCER.target),
            DecisionTreeClassifier(max_depth=3, random_state=0).fit(CANCER.data, CANCER.target))


@pytest.fixture
def artifacts(tmp_path, estimators):
    old, new = estimators
    a, b = tmp_path / "a.joblib", tmp_path / "b.joblib"
    joblib.dump(old, a)
    joblib.dump(old, b)
    return a, b, old, new


def probabilities(client, name):
    answer = client.post(f"/models/{name}/predict", json={"instances": ROWS.tolist()})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["probabilities"]


def test_the_route_swaps_what_loads_and_keeps_what_does_not(make_app, artifacts):
    a, b, old, new = artifacts
    client = make_app(MODELS=f"a={a},b={b}", ADMIN_TOKEN=TOKEN, ENVIRONMENT="development").test_client()
    listing = client.get("/models").get_json()
    assert listing["generation"] == 0
    loaded_at = {m["name"]: m["loaded_at"] for m in listing["models"]}

    joblib.dump(new, a)
    b.write_bytes(b"garbage")
    answer = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["generation"] == 1 and not body["complete"] and body["broadcast"] == "none"
    assert [m["model"] for m in body["reloaded"]] == ["a:1"]
    assert body["failed"][0]["model"] == "b:1" and body["failed"][0]["error"]
    assert np.allclose(probabilities(client, "a"), new.predict_proba(ROWS))
    assert np.allclose(probabilities(client, "b"), old.predict_proba(ROWS))  # kept

    listing = client.get("/models").get_json()
    assert listing["generation"] == 1
    now = {m["name"]: m["loaded_at"] for m in listing["models"]}
    assert now["a"] > loaded_at["a"] and now["b"] == loaded_at["b"]
    assert client.get("/readyz").status_code == 200


def test_in_production_a_failed_reload_does_not_say_why(make_app, artifacts):
    a, b, _, _ = artifacts
    client = make_app(MODELS=f"a={a}", ADMIN_TOKEN=TOKEN, ENVIRONMENT="production").test_client()
    a.write_bytes(b"garbage")
    answer = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 503
    assert str(a) not in answer.get_data(as_text=True)


def test_who_may_reload(make_app, artifacts):
    a, *_ = artifacts
    assert make_app(MODELS=f"a={a}").test_client().post("/admin/reload").status_code == 404
    client = make_app(MODELS=f"a={a}", ADMIN_TOKEN=TOKEN).test_client()
    missing = client.post("/admin/reload")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in ("Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x", "Basic " + TOKEN):
        status = client.post("/admin/reload", headers={"Authorization": wrong}).status_code
        assert status == (401 if wrong.startswith("Basic") else 403), wrong
    assert client.get("/admin/reload").status_code == 405
    assert client.post("/admin/reload", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_the_admin_token_is_read_once_like_the_api_keys(tmp_path):
    assert Settings.from_env({}).admin_token is None
    assert Settings.from_env({"ADMIN_TOKEN": TOKEN}).admin_token == TOKEN
    secret = tmp_path / "admin_token"
    secret.write_text(TOKEN + "\n")
    assert Settings.from_env({"ADMIN_TOKEN_FILE": str(secret)}).admin_token == TOKEN
    assert TOKEN not in repr(Settings.from_env({"ADMIN_TOKEN": TOKEN}))
    for env, says in (({"ADMIN_TOKEN": TOKEN, "ADMIN_TOKEN_FILE": str(secret)}, "both set"),
                      ({"ADMIN_TOKEN": "short"}, "ADMIN_TOKEN is not a token"),
                      ({"ADMIN_TOKEN": "sixteen-chars-but spaced"}, "ADMIN_TOKEN is not a token"),
                      ({"ADMIN_TOKEN_FILE": str(tmp_path / "none")}, "cannot be read")):
        with pytest.raises(ConfigurationError, match=says) as refused:
            Settings.from_env(env)
        assert "spaced" not in refused.value.message


@pytest.mark.parametrize("cache_routes", ["none", "all"])
def test_reload_with_micro_batching_serves_the_new_model(make_app, artifacts, cache_routes):
    """The micro-batcher of a model version is bound to the model object: after an in-process
    reload (no server master) it must not go on answering with the old one, nor, with the cache
    on, have the old model's answers cached under the new artifact."""
    a, _, old, new = artifacts
    client = make_app(MODELS=f"a={a}", ADMIN_TOKEN=TOKEN, MAX_BATCH_SIZE=8, MAX_BATCH_WAIT_MS=1,
                      CACHE_ROUTES=cache_routes).test_client()
    assert np.allclose(probabilities(client, "a"), old.predict_proba(ROWS))
    joblib.dump(new, a)
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert np.allclose(probabilities(client, "a"), new.predict_proba(ROWS))
    assert np.allclose(probabilities(client, "a"), new.predict_proba(ROWS))  # a cache hit, if on


def test_a_refused_reload_logs_the_caller_not_the_proxy(make_app, artifacts, caplog):
    a, *_ = artifacts
    client = make_app(MODELS=f"a={a}", ADMIN_TOKEN=TOKEN, TRUSTED_PROXY_HOPS=1).test_client()
    answer = client.post("/admin/reload", headers={"Authorization": "Bearer " + TOKEN + "x",
                                                   "X-Forwarded-For": "203.0.113.7"})
    assert answer.status_code == 403
    assert "wrong admin token from ip:203.0.113.7" in caplog.text
