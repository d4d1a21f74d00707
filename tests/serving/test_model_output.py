"""What a model answers must be an answer, and a model's own failure is not the client's fault.

A wrong number of predictions or probabilities, an infinite prediction, a NaN probability: a
500 naming the model, the detail logged. A NaN prediction is the model's "no value": null.
A ValueError from scikit-learn's validation is the client's 422; one from the model's own code
(a custom step, a model's predict) is a 500 whose message holds none of the model's words.
Each case is followed by a request that still succeeds.
"""
from __future__ import annotations

import logging

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from conftest import models_env, to_rows
from model_doubles import (SECRET, BadProbaClassifier, CustomStep, OutputRegressor, ReadsItsConfig,
                           WrongCountModel)


def lookup_table(X):
    """A FunctionTransformer's function failing in the model author's code."""
    X = np.asarray(X, dtype=float)
    if (X > 100).any():
        raise ValueError(f"no entry in {SECRET}")
    return X


@pytest.fixture(scope="module")
def doubles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("doubles")
    X, y = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]]), np.array([0, 1, 0, 1])
    models = {
        "count": WrongCountModel(),
        "nan": OutputRegressor([np.nan]),
        "inf": OutputRegressor([1.0, np.inf]),
        "width": BadProbaClassifier("width"),
        "rows": BadProbaClassifier("rows"),
        "nanproba": BadProbaClassifier("nan"),
        "config": ReadsItsConfig(),
        "custom": make_pipeline(CustomStep(checked=False), LogisticRegression()).fit(X, y),
        "function": make_pipeline(FunctionTransformer(lookup_table), LogisticRegression()).fit(X, y),
        "checked": make_pipeline(CustomStep(checked=True), LogisticRegression()).fit(X, y),
    }
    out = {}
    for name, model in models.items():
        path = folder / f"{name}.joblib"
        joblib.dump(model, path)
        out[name] = (path, model)
    return out


@pytest.fixture(params=[{}, {"MAX_BATCH_SIZE": "8"}], ids=["alone", "micro-batching"])
def client(request, make_app, trained, doubles):
    models = ",".join(f"{name}={path}" for name, (path, _) in doubles.items())
    return make_app(MODELS=f"{models_env(trained, 'cancer')},{models}", **request.param).test_client()


def still_serves(client, trained):
    _, estimator, sample = trained["cancer"]
    response = client.post("/models/cancer/predict", json={"instances": to_rows(sample)})
    assert response.status_code == 200 and response.get_json()["predictions"] == estimator.predict(sample).tolist()


def model_failure(client, name, rows, caplog) -> str:
    """The 500 a model's fault gets: its name, no detail; the detail in an error log line."""
    with caplog.at_level(logging.ERROR):
        response = client.post(f"/models/{name}/predict", json={"instances": rows})
    assert response.status_code == 500, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["message"].startswith(f"model {name}:1 failed: a fault in the model, not in the request")
    assert error["model"] == name and SECRET not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and f"model {name}:1 failed" in r.getMessage()]
    assert logged, caplog.text
    return "\n".join(r.getMessage() + (f" {r.exc_info[1]}" if r.exc_info else "") for r in logged)


@pytest.mark.parametrize("name,rows,logged", [
    ("count", [[1, 2]], "predict returned 6 values for 1 rows"),
    ("inf", [[1, 2], [3, 4]], "predict returned infinity for row 1"),
    ("width", [[1, 2]], "predict_proba returned shape (1, 3) for 1 rows of 2 classes"),
    ("rows", [[1, 2], [3, 4]], "predict_proba returned shape (3, 2) for 2 rows of 2 classes"),
    ("nanproba", [[1, 2]], "predict_proba returned NaN or infinity"),
])
def test_an_answer_that_cannot_be_one_is_a_500_naming_the_model(client, trained, caplog, name, rows, logged):
    assert logged in model_failure(client, name, rows, caplog)
    still_serves(client, trained)


def test_a_nan_prediction_is_null(client, trained):
    response = client.post("/models/nan/predict", json={"instances": [[1, 2], [3, 4]]})
    assert response.status_code == 200 and response.get_json()["predictions"] == [None, 1.0]


@pytest.mark.parametrize("name", ["config", "custom", "function"])
def test_a_value_error_from_the_models_own_code_is_a_500_that_echoes_nothing(client, trained, caplog, name):
    logged = model_failure(client, name, [[1000.0, 2.0]], caplog)
    assert "its own code raised ValueError" in logged and SECRET in logged  # the traceback's exception
    still_serves(client, trained)


def test_scikit_learns_validation_inside_a_custom_step_is_still_the_clients_422(client, trained):
    response = client.post("/models/checked/predict", json={"instances": [[1.0, 2.0], [None, 2.0]]})
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["instance"] == 1 and "missing" in error["message"]
    assert client.post("/models/checked/predict", json={"instances": [[1.0, 2.0]]}).status_code == 200
    still_serves(client, trained)


def test_a_failing_row_fails_alone_in_a_merged_call(trained, doubles):
    # micro-batching's rule (predict_merged): a merged call the model's code fails on is retried
    # part by part, so only the request whose rows it fails on gets the 500.
    from mlapi.errors import ModelFailure
    from mlapi.serving.batching import predict_merged
    from mlapi.serving.instances import to_model_input
    from mlapi.serving.model import ServedModel

    _, pipeline = doubles["custom"]
    model = ServedModel("custom", "1", pipeline)
    parts = [[[1.0, 2.0]], [[1000.0, 2.0]], [[3.0, 0.0]]]
    outcomes = predict_merged(model.predict, [to_model_input(model, rows) for rows in parts], [None] * 3)
    assert isinstance(outcomes[1], ModelFailure)
    assert outcomes[0].predictions == pipeline.predict(np.array(parts[0])).tolist()
    assert outcomes[2].predictions == pipeline.predict(np.array(parts[2])).tolist()


def test_a_record_the_models_code_fails_on_is_a_recorded_failure_in_a_pubsub_batch(doubles):
    # Redelivering the message would fail the same way: the record is recorded as failed (the
    # detail logged), the others scored, and the message acknowledged.
    from mlapi.serving import inference
    from mlapi.serving.model import ServedModel

    _, pipeline = doubles["custom"]
    served = ServedModel("custom", "1", pipeline)

    class Registry:
        def get(self, name, version):
            return served

    class Store:
        def lookup(self, ids):
            return {i: {"id": i} for i in ids}

    records = {"a": [1.0, 2.0], "bad": [1000.0, 2.0], "c": [3.0, 0.0]}
    service = inference.InferenceService(Registry(), None, Store())
    service._instance = lambda model, entity_id, record: (records[entity_id], records[entity_id])
    scored = service.predict_ids(inference.ModelRef("custom"), ["a", "bad", "c"])
    assert scored.ids == ["a", "c"] and list(scored.failures) == ["bad"]
    assert scored.failures["bad"].startswith("model custom:1 failed: a fault in the model")
    assert SECRET not in scored.failures["bad"]
    assert scored.result.predictions == pipeline.predict(np.array([records["a"], records["c"]])).tolist()
