"""Loading: digests, failures that make /readyz say why, scikit-learn version checks,
estimators from other libraries."""
import hashlib
import logging
import os

import joblib
import numpy as np
import pytest
import sklearn.base

from conftest import as_plain, models_env


class DuckClassifier:
    """A scikit-learn-API estimator from 'another library': no BaseEstimator, no tags."""

    def __init__(self):
        self.classes_ = np.array(["no", "yes"])
        self.n_features_in_ = 2

    def predict(self, X):
        return self.classes_[(np.asarray(X)[:, 0] > 0).astype(int)]

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-np.asarray(X, dtype=float)[:, 0]))
        return np.column_stack([1 - p, p])


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_matching_digest_is_served(make_app, trained):
    path = trained["cancer"][0]
    client = make_app(MODELS=f"c={path}#sha256={sha256(path)}").test_client()
    assert client.get("/readyz").status_code == 200
    assert client.get("/models/c/versions/1").get_json()["sha256"] == sha256(path)


def test_digest_mismatch_is_refused_and_readyz_says_why(make_app, trained, caplog):
    with caplog.at_level(logging.ERROR):
        app = make_app(MODELS=f"{models_env(trained, 'cancer')},bad={trained['tree'][0]}#sha256={'0' * 64}")
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    failure = ready.get_json()["failures"][0]
    assert failure["name"] == "bad" and "sha256 mismatch" in failure["error"]
    assert "NOT loaded" in caplog.text and "sha256 mismatch" in caplog.text
    refused = client.post("/models/bad/predict", json={"instances": [[0.0] * 30]})
    assert refused.status_code == 503 and "sha256 mismatch" in refused.get_json()["error"]["message"]
    # the healthy model keeps serving
    assert client.post("/models/cancer/predict", json={"instances": [[0.0] * 30]}).status_code == 200


class WritesMarker:
    """Unpickling it creates a file: stands for a swapped artifact that runs code when loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_wrong_digest_refuses_the_file_before_unpickling_it(make_app, tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "swapped.joblib"
    joblib.dump(WritesMarker(marker), path)
    client = make_app(MODELS=f"swapped={path}#sha256={'0' * 64}").test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "sha256 mismatch" in ready.get_json()["failures"][0]["error"]
    assert not marker.exists()
    # The double does run code when unpickled: with its true digest, the marker appears.
    make_app(MODELS=f"swapped={path}#sha256={sha256(path)}").test_client().get("/readyz")
    assert marker.exists()


def test_a_file_swapped_after_its_digest_was_checked_is_never_unpickled(make_app, trained, tmp_path, monkeypatch):
    # The pinned file is replaced the moment its digest has been computed (deterministically:
    # the hash's hexdigest does it), before anything is unpickled. What is loaded must be the
    # bytes that were hashed: the harmless model, never the swapped file's code.
    harmless, estimator, sample = trained["tree"]
    served = tmp_path / "model.joblib"
    served.write_bytes(harmless.read_bytes())
    pinned = sha256(served)
    marker = tmp_path / "unpickled"
    swapped = tmp_path / "swapped.joblib"
    joblib.dump(WritesMarker(marker), swapped)
    real_sha256 = hashlib.sha256

    class SwapOnceHashed:
        def __init__(self, *data):
            self.hash = real_sha256(*data)

        def update(self, data):
            self.hash.update(data)

        def hexdigest(self):
            digest = self.hash.hexdigest()
            if digest == pinned and swapped.exists():
                os.replace(swapped, served)
            return digest

    monkeypatch.setattr(hashlib, "sha256", SwapOnceHashed)
    client = make_app(MODELS=f"m={served}#sha256={pinned}").test_client()
    monkeypatch.undo()
    assert not swapped.exists() and sha256(served) != pinned  # the swap happened
    assert not marker.exists()
    assert client.get("/readyz").status_code == 200
    answer = client.post("/models/m/predict", json={"instances": as_plain(sample)}).get_json()
    assert answer["predictions"] == estimator.predict(sample).tolist()


def test_model_sha256_setting_for_the_single_model_form(make_app, trained):
    path = trained["tree"][0]
    assert make_app(MODEL_URI=str(path), MODEL_SHA256=sha256(path)).test_client().get("/readyz").status_code == 200
    assert make_app(MODEL_URI=str(path), MODEL_SHA256="1" * 64).test_client().get("/readyz").status_code == 503


@pytest.mark.parametrize("content,needle", [(None, "not found"), (b"not a pickle", "could not unpickle")])
def test_missing_or_corrupt_artifact_gives_503_not_a_crash(make_app, tmp_path, content, needle):
    path = tmp_path / "broken.joblib"
    if content is not None:
        path.write_bytes(content)
    client = make_app(MODEL_URI=str(path)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and needle in response.get_json()["failures"][0]["error"]
    assert client.get("/healthz").status_code == 200
    assert client.post("/predict", json={"instances": [[1]]}).status_code == 503


def test_an_object_without_predict_is_refused(make_app, tmp_path):
    path = tmp_path / "dict.joblib"
    joblib.dump({"not": "a model"}, path)
    response = make_app(MODEL_URI=str(path)).test_client().get("/readyz")
    assert response.status_code == 503 and "no predict()" in response.get_json()["failures"][0]["error"]


@pytest.fixture
def old_pickle(trained, tmp_path, monkeypatch):
    """A real pickle written as if by scikit-learn 1.0.2 (the version stamp sklearn stores)."""
    path = tmp_path / "old.joblib"
    with monkeypatch.context() as patch:
        patch.setattr(sklearn.base, "__version__", "1.0.2")
        joblib.dump(trained["tree"][1], path)
    return path


def test_other_sklearn_version_warns_naming_both(make_app, old_pickle, caplog):
    with caplog.at_level(logging.WARNING):
        client = make_app(MODEL_URI=str(old_pickle)).test_client()
    assert client.get("/readyz").status_code == 200
    assert f"pickled with scikit-learn 1.0.2 but this server runs {sklearn.__version__}" in caplog.text
    assert client.get("/models/latest/versions/1").get_json()["sklearn_version"] == "1.0.2"


def test_strict_sklearn_version_refuses(make_app, old_pickle):
    response = make_app(MODEL_URI=str(old_pickle), STRICT_SKLEARN_VERSION="1").test_client().get("/readyz")
    assert response.status_code == 503
    assert "STRICT_SKLEARN_VERSION" in response.get_json()["failures"][0]["error"]


def test_estimators_from_other_libraries_are_served(make_app, tmp_path):
    path = tmp_path / "duck.joblib"
    model = DuckClassifier()
    joblib.dump(model, path)
    client = make_app(MODEL_URI=str(path)).test_client()
    rows = [[-1.0, 0.0], [2.0, 1.0]]
    body = client.post("/predict", json={"instances": rows}).get_json()
    assert body["predictions"] == model.predict(rows).tolist() == ["no", "yes"]
    assert body["probabilities"] == model.predict_proba(rows).tolist()
    assert client.get("/models/latest/versions/1").get_json()["task"] == "classification"


def test_the_string_columns_are_worked_out_at_load_before_any_request(make_app, tmp_path):
    """At load, in the master before it forks: shared by every worker, no first request pays."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"plan": ["basic", "premium", "basic", "family"], "visits": [1.0, 5.0, 2.0, 8.0]})
    model = make_pipeline(make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
                          LogisticRegression()).fit(frame, [0, 1, 0, 1])
    joblib.dump(model, tmp_path / "plans.joblib")
    app = make_app(MODELS=f"plans={tmp_path / 'plans.joblib'}")
    served = app.extensions["mlapi.services"].registry.get("plans")
    assert vars(served)["string_columns"] == {"plan": ["basic", "family", "premium"]}  # set, not pending
