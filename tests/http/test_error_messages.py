"""Every 4xx message says what was wrong AND what to send instead, whichever layer answers.

A table of bad requests, each sent to a real app (the app factory) twice: as it comes (a JSON
POST route is then answered by the fast path) and with the fast path taken out of the request
pipeline (Flask answers). Both must give the same status and JSON, the error's shape, and a
message holding the hint for what to send.
"""
from __future__ import annotations

import contextlib

import pytest

from conftest import models_env

CANCER_ROW = [1.0] * 30
DIABETES_ROW = {"age": 0.04, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04,
                "s2": -0.03, "s3": -0.04, "s4": -0.003, "s5": 0.02, "s6": -0.02}
DIABETES_KEYS = "send each instance as an object with keys age, sex, bmi, bp, s1, s2, s3, s4, s5, s6"


def _with(**changes):
    return {**DIABETES_ROW, **changes}


# (id, method, path, JSON body, status, texts the message must hold, details the error must hold)
CASES = [
    ("unknown model", "POST", "/models/nope/predict", {"instances": [CANCER_ROW]}, 404,
     ["unknown model 'nope'", "name one of the served models: cancer, diabetes, ridge, text, tree"],
     {"models": ["cancer", "diabetes", "ridge", "text", "tree"]}),
    ("unknown version", "POST", "/models/cancer/versions/9/predict", {"instances": [CANCER_ROW]}, 404,
     ["no version '9'", "name one of its versions: 1", "leave the version out"], {"versions": ["1"]}),
    ("unknown single-input model", "POST", "/model/nope/text_to_prediction", {"text": "x"}, 404,
     ["unknown model 'nope'", "served models: cancer"], {}),
    ("POST to a GET route", "POST", "/predictions/abc", {"instances": [CANCER_ROW]}, 405,
     ["method not allowed", "send GET to this URL"], {"allowed_methods": ["GET", "HEAD", "OPTIONS"]}),
    ("no such URL", "POST", "/nope", {}, 404, ["not found", "POST /models/<name>/predict", "GET /models"], {}),
    ("unknown id", "GET", "/models/cancer/predict/nope-id", None, 404,
     ["no record with id 'nope-id'", "mlapi features add", "POST /models/cancer/predict"], {"id": "nope-id"}),
    ("no instances", "POST", "/models/cancer/predict", {"instances": []}, 422,
     ["no instances", "send each instance as a list of 30 numbers"], {}),
    ("one row not nested", "POST", "/models/cancer/predict", {"instances": CANCER_ROW}, 422,
     ["instance 0 is 1.0, not a row", 'one row still goes in a list of rows, {"instances": [[...]]}',
      "send each instance as a list of 30 numbers"], {"instance": 0}),
    ("wrong width", "POST", "/models/cancer/predict", {"instances": [[1.0, 2.0]]}, 422,
     ["expected 30 features per instance, got 2", "send each instance as a list of 30 numbers"],
     {"expected": 30, "got": 2}),
    ("ragged rows", "POST", "/models/cancer/predict", {"instances": [CANCER_ROW, [1.0] * 29]}, 422,
     ["different lengths [29, 30]", "send each instance as a list of 30 numbers"], {}),
    ("mixed instances", "POST", "/models/cancer/predict", {"instances": [CANCER_ROW, {"a": 1}]}, 422,
     ["instance 1 is not a list like the first one", "send every instance the same way"], {"instance": 1}),
    ("not a number, array model", "POST", "/models/cancer/predict", {"instances": [[1.0] * 29 + ["abc"]]}, 422,
     ["instance 0, feature 29: 'abc' is not a number", "send each instance as a list of 30 numbers"],
     {"instance": 0, "column": 29}),
    ("objects for an array model", "POST", "/models/cancer/predict", {"instances": [{"a": 1.0}]}, 422,
     ["fitted without feature names", "send each instance as a list of 30 values"], {}),
    ("text for a tabular model", "POST", "/models/cancer/predict", {"instances": ["hello"]}, 422,
     ["instance 0 is 'hello', not a row: model cancer takes tabular input, not text",
      "send each instance as a list of 30 numbers"], {"instance": 0}),
    ("unknown feature name", "POST", "/models/diabetes/predict", {"instances": [{**DIABETES_ROW, "nope": 1}]}, 422,
     ["unknown features ['nope']", "send exactly the features the model expects: ['age', 'sex'"],
     {"unknown": ["nope"]}),
    ("missing feature name", "POST", "/models/ridge/predict", {"dataframe_records": [{"age": 1.0}]}, 422,
     ["instance 0: missing features ['sex'", "send exactly the features"], {}),
    ("not a number, frame model", "POST", "/models/diabetes/predict",
     {"instances": [DIABETES_ROW, _with(bmi="twelve")]}, 422,
     ["instance 1, column 'bmi': 'twelve' is not a number; send a number"],
     {"instance": 1, "column": "bmi", "value": "twelve", "expected": "a number"}),
    ("not a number, list rows", "POST", "/models/ridge/predict",
     {"instances": [list(_with(s3="high").values())]}, 422,
     ["instance 0, column 's3': 'high' is not a number; send a number"], {"instance": 0, "column": "s3"}),
    ("missing value, model without NaN support", "POST", "/models/ridge/predict",
     {"dataframe_split": {"columns": list(DIABETES_ROW), "data": [list(DIABETES_ROW.values()),
                                                                  list(_with(s5=None).values())]}}, 422,
     ["instance 1, column 's5': the value is missing (null or NaN)", "cannot take a missing value",
      "send a number"], {"instance": 1, "column": "s5"}),
    ("a list for a value", "POST", "/models/diabetes/predict", {"instances": [_with(age=[1, 2])]}, 422,
     ["instance 0, column 'age': [1, 2] is a list", "send a single value"], {"instance": 0, "column": "age"}),
    ("short dataframe_split row", "POST", "/models/diabetes/predict",
     {"dataframe_split": {"columns": list(DIABETES_ROW), "data": [[1.0]]}}, 422,
     ["row 0 of dataframe_split.data is not a list of 10 values", "one value per column"], {"instance": 0}),
    ("empty dataframe_split", "POST", "/models/diabetes/predict",
     {"dataframe_split": {"columns": list(DIABETES_ROW), "data": []}}, 422,
     ["dataframe_split.data is empty", "send one row per instance"], {}),
    ("frame model, wrong width", "POST", "/models/diabetes/predict", {"instances": [[1.0]]}, 422,
     ["expected 10 features per instance, got 1", DIABETES_KEYS], {}),
    ("non-string to a text model", "POST", "/models/text/predict", {"instances": [42]}, 422,
     ["instance 0 is 42, not a string", 'send each instance as a string, e.g. {"instances": ["some text"]}'],
     {"instance": 0}),
    ("text route, tabular model", "POST", "/model/cancer/text_to_prediction", {"text": "hi"}, 422,
     ["takes tabular features, not text", "send them as features"], {}),
    ("nested single-input features", "POST", "/model/cancer/features_to_prediction", {"features": [[1.0]]}, 422,
     ["one flat list of numbers", 'send {"features": [1.0, 2.0, ...]}'], {}),
    ("predict_features, wrong width", "POST", "/models/text/predict_features", {"features": [[1.0, 2.0]]}, 422,
     ["features per row for the predictor, got 2", "as POST /models/text/features returns them"], {}),
    ("bad CSR", "POST", "/models/text/predict_features", {"features": {"format": "csr", "shape": [1, 2]}}, 422,
     ["invalid CSR features", "as POST /models/text/features returns them"], {}),
    ("wrong method", "GET", "/predict", None, 405, ["method not allowed", "send POST with a JSON body"],
     {"allowed_methods": ["OPTIONS", "POST"]}),
]


@pytest.fixture(scope="module")
def app(trained, tmp_path_factory):
    from mlapi import create_app
    from mlapi.config import Settings

    folder = tmp_path_factory.mktemp("error-messages")
    return create_app(Settings.from_env({
        "MODELS": models_env(trained, "cancer", "diabetes", "ridge", "text", "tree"),
        "MODEL_CACHE_DIR": str(folder / "cache"), "MAX_REQUEST_BYTES": "2000",
        "FEATURE_STORE_URL": f"sqlite:///{folder}/features.db",
        "PREDICTIONS_DB_URL": f"sqlite:///{folder}/predictions.db"}))


@contextlib.contextmanager
def fast_path_taken_out(app):
    pipeline = app.wsgi_app  # RequestPipeline(FastPath(Flask's own wsgi_app))
    fast, pipeline.app = pipeline.app, pipeline.app.flask_wsgi
    try:
        yield
    finally:
        pipeline.app = fast


def answers(app, method: str, path: str, body) -> list:
    """The answer with the fast path and without it: (status, JSON, Allow header) each."""
    got = []
    for layers in (contextlib.nullcontext(), fast_path_taken_out(app)):
        with layers:
            response = app.test_client().open(path, method=method, json=body)
        got.append((response.status_code, response.get_json(), response.headers.get("Allow")))
    return got


@pytest.mark.parametrize("method,path,body,status,hints,details", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_each_message_says_what_to_send(app, method, path, body, status, hints, details):
    got = answers(app, method, path, body)
    assert all(answer == got[0] for answer in got), got  # the fast path answers as Flask does
    code, payload, _ = got[0]
    assert code == status, payload
    error = payload["error"]
    assert list(payload) == ["error"] and error["status"] == status
    assert isinstance(error["message"], str) and "\n" not in error["message"]
    for hint in hints:
        assert hint in error["message"], (hint, error["message"])
    for key, value in details.items():
        assert error[key] == value, (key, error)


def test_the_fast_path_answered_the_json_routes(make_app, trained):
    """The table above compares two layers only if the first really was the fast path."""
    app = make_app(MODELS=models_env(trained, "cancer"))
    flask_requests = []
    app.before_request(lambda: flask_requests.append(1))
    answers(app, "POST", "/models/cancer/predict", {"instances": [[1.0, 2.0]]})
    assert flask_requests == [1]  # the second answer only


def test_content_type_and_size_say_what_to_send(app):
    client = app.test_client()
    response = client.post("/models/cancer/predict", data='{"instances": [[1]]}', content_type="text/plain")
    error = response.get_json()["error"]
    assert response.status_code == 415 and error["status"] == 415
    assert "got 'text/plain'" in error["message"] and "Content-Type: application/json" in error["message"]
    response = client.post("/models/cancer/predict", json={"instances": [CANCER_ROW] * 60})
    error = response.get_json()["error"]
    assert response.status_code == 413 and error["status"] == 413
    for hint in ("the limit is 2000 bytes (MAX_REQUEST_BYTES)", "send fewer instances per request"):
        assert hint in error["message"], error


def test_405_names_the_allowed_methods_in_the_header_too(app):
    response = app.test_client().post("/healthz", json={})
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert "send GET to this URL" in response.get_json()["error"]["message"]


def test_metrics_token_says_which_header_to_send(make_app, trained):
    client = make_app(MODELS=models_env(trained, "cancer"), METRICS_TOKEN="s3cret").test_client()
    response = client.get("/metrics")
    assert response.status_code == 401
    assert "Authorization: Bearer <METRICS_TOKEN>" in response.get_json()["error"]["message"]
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
