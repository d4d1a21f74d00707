"""Every error case: a JSON error with the right status, then a request that still succeeds."""
import logging

import joblib
import pytest

from conftest import models_env, to_rows
from model_doubles import ExplodingModel, UnexplainableModel


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["status"] == status and body["error"]["message"]
    return body["error"]


def still_serves(client, trained):
    response = client.post("/models/cancer/predict", json={"instances": to_rows(trained["cancer"][2][:1])})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == trained["cancer"][1].predict(trained["cancer"][2][:1]).tolist()


CASES = [
    # (description, path, kwargs, status, text the message must contain)
    ("malformed JSON", "/predict", dict(data=b'{"instances": [1,', content_type="application/json"), 400, "malformed JSON"),
    ("empty body", "/predict", dict(data=b"", content_type="application/json"), 400, "empty"),
    ("not an object", "/predict", dict(json=[[1, 2]]), 400, "JSON object"),
    ("no instances key", "/predict", dict(json={"rows": []}), 400, "instances"),
    ("two instance keys", "/predict", dict(json={"instances": [], "inputs": []}), 400, "exactly one"),
    ("bad parameters", "/predict", dict(json={"instances": [[1]], "parameters": {"probabilities": "yes"}}), 400, "probabilities"),
    ("wrong content type", "/predict", dict(data="instances=1", content_type="text/plain"), 415, "application/json"),
    ("form content type", "/predict", dict(data={"a": "1"}), 415, "application/json"),
    ("no instances", "/predict", dict(json={"instances": []}), 422, "no instances"),
    ("wrong feature count", "/predict", dict(json={"instances": [[1.0, 2.0]]}), 422, "expected 30 features"),
    ("ragged rows", "/predict", dict(json={"instances": [[1.0] * 30, [1.0] * 29]}), 422, "different lengths"),
    ("non-numeric", "/predict", dict(json={"instances": [[1.0] * 29 + ["abc"]]}), 422, "'abc' is not a number"),
    ("objects without names", "/predict", dict(json={"instances": [{"a": 1}]}), 422, "without feature names"),
    ("text to tabular", "/predict", dict(json={"instances": ["hello"]}), 422, "not text"),
    ("unknown feature name", "/models/diabetes/predict", dict(json={"instances": [{"age": 1, "nope": 2}]}), 422, "unknown features ['nope']"),
    ("missing feature name", "/models/ridge/predict", dict(json={"dataframe_records": [{"age": 1}]}), 422, "missing features"),
    ("non-string to text", "/models/text/predict", dict(json={"instances": [42]}), 422, "not a string"),
    ("tabular text route", "/model/cancer/text_to_prediction", dict(json={"text": "hi"}), 422, "tabular"),
    ("single-input missing text", "/model/text/text_to_prediction", dict(json={"txt": "hi"}), 400, '"text"'),
    ("single-input nested features", "/model/cancer/features_to_prediction", dict(json={"features": [[1.0]]}), 422, "flat list"),
    ("predict_features wrong width", "/models/text/predict_features", dict(json={"features": [[1.0, 2.0]]}), 422, "features per row"),
    ("bad csr", "/models/text/predict_features", dict(json={"features": {"format": "csr", "shape": [1, 2]}}), 422, "CSR"),
    ("unknown model", "/models/nope/predict", dict(json={"instances": [[1.0]]}), 404, "unknown model"),
    ("unknown version", "/models/cancer/versions/9/predict", dict(json={"instances": [[1.0]]}), 404, "no version"),
    ("unknown single-input model", "/model/nope/text_to_features", dict(json={"text": "x"}), 404, "unknown model"),
    ("unknown route", "/nope", dict(json={}), 404, "not found"),
]


@pytest.mark.parametrize("description,path,kwargs,status,needle", CASES, ids=[c[0] for c in CASES])
def test_error_then_success(client, trained, description, path, kwargs, status, needle):
    error = error_of(client.post(path, **kwargs), status)
    assert needle in error["message"], error
    still_serves(client, trained)


def test_unknown_model_metadata_is_404(client, trained):
    error_of(client.get("/models/nope"), 404)
    error_of(client.get("/models/cancer/versions/7"), 404)
    still_serves(client, trained)


def test_wrong_method_is_405_with_allow(client, trained):
    response = client.get("/predict")
    assert "POST" in error_of(response, 405)["allowed_methods"]
    assert "POST" in response.headers["Allow"]
    error_of(client.post("/healthz"), 405)
    still_serves(client, trained)


def test_body_over_the_limit_is_413(make_app, trained):
    client = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES=1000).test_client()
    error = error_of(client.post("/predict", data=b"[" + b"1," * 2000 + b"1]", content_type="application/json"), 413)
    assert "1000 bytes" in error["message"]
    still_serves(client, trained)


def test_a_bug_is_a_json_500_with_a_logged_traceback(make_app, trained, tmp_path, caplog):
    path = tmp_path / "exploding.joblib"
    joblib.dump(ExplodingModel(), path)
    client = make_app(MODELS=f"{models_env(trained, 'cancer')},bug={path}").test_client()
    with caplog.at_level(logging.ERROR):
        error = error_of(client.post("/models/bug/predict", json={"instances": [[1, 2]]}), 500)
    assert error["message"] == "internal server error" and "boom" not in str(error)  # no internals leak
    assert any(r.exc_info and "boom: a bug" in str(r.exc_info[1]) for r in caplog.records)
    still_serves(client, trained)


@pytest.mark.parametrize("shape", ["[Infinity, 4]", "[1e400, 4]", "[1, -Infinity]", "[NaN, 4]", "[1.5, 4]"])
def test_a_csr_shape_that_is_not_two_whole_numbers_is_a_422(client, shape):
    # int(inf) raises OverflowError, which was a 500.
    body = '{"features": {"format": "csr", "shape": %s, "data": [], "indices": [], "indptr": [0]}}' % shape
    response = client.post("/models/text/predict_features", data=body, content_type="application/json")
    assert response.status_code == 422, response.get_data(as_text=True)
    message = response.get_json()["error"]["message"]
    assert '"shape" must be [rows, columns], two whole numbers' in message and "features returns them" in message


@pytest.mark.parametrize("batching", [{}, {"MAX_BATCH_SIZE": "8"}])
def test_a_rejection_the_diagnosis_cannot_explain_is_still_a_422(make_app, trained, tmp_path, batching):
    path = tmp_path / "unexplainable.joblib"
    joblib.dump(UnexplainableModel(), path)
    client = make_app(MODELS=f"{models_env(trained, 'cancer')},odd={path}", **batching).test_client()
    error = error_of(client.post("/models/odd/predict", json={"instances": [{"colour": "green"}]}), 422)
    # the model's own words, and what to send
    assert "Found unknown categories ['green']" in error["message"] and "keys colour" in error["message"]
    still_serves(client, trained)



# ---- an error does not grow with the request -----------------------------------------------------
DIABETES_ROW = dict(zip(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], [0.01] * 10))


def test_ten_thousand_unknown_keys_make_a_small_422(client, trained):
    unknown = {f"unknown_feature_{i:05d}": 1.0 for i in range(10_000)}
    response = client.post("/models/diabetes/predict", json={"instances": [{**DIABETES_ROW, **unknown}]})
    error = error_of(response, 422)
    assert len(response.get_data()) < 5_000, len(response.get_data())  # was 168 KB
    assert "unknown features ['unknown_feature_00000'" in error["message"] and "(10000 in all)" in error["message"]
    assert error["unknown"][:2] == ["unknown_feature_00000", "unknown_feature_00001"]
    assert len(error["unknown"]) == 100 and error["unknown_count"] == 10_000
    still_serves(client, trained)


def test_a_long_model_name_is_not_echoed_whole(client, trained):
    name = "m" * 10_000
    response = client.post(f"/models/{name}/predict", json={"instances": [[1.0] * 30]})
    error = error_of(response, 404)
    assert len(response.get_data()) < 1_000, len(response.get_data())
    assert error["message"].startswith("unknown model 'mmmm") and "…(9902 more)" in error["message"]
    still_serves(client, trained)


@pytest.mark.parametrize("path,value", [("/models/diabetes/predict", "x" * 100_000),
                                        ("/models/diabetes/predict", {"k": "v" * 100_000})])
def test_a_huge_value_is_quoted_briefly(client, trained, path, value):
    response = client.post(path, json={"instances": [{**DIABETES_ROW, "bmi": value}]})
    error = error_of(response, 422)
    assert len(response.get_data()) < 2_000, len(response.get_data())
    assert error["instance"] == 0 and error["column"] == "bmi"
    still_serves(client, trained)


# ---- objects, lists and booleans where a value belongs -----------------------------------------
OBJECTS = [
    ("array model", "/models/cancer/predict", {"instances": [[{}] * 30]}, 0),
    ("frame model, list rows", "/models/diabetes/predict", {"instances": [[{}] * 10]}, "age"),
    ("frame model, objects", "/models/diabetes/predict", {"instances": [{**DIABETES_ROW, "bmi": {"a": 1}}]}, "bmi"),
    ("frame model, records", "/models/ridge/predict", {"dataframe_records": [DIABETES_ROW, {**DIABETES_ROW, "s3": {}}]}, "s3"),
    ("frame model, split", "/models/ridge/predict",
     {"dataframe_split": {"columns": list(DIABETES_ROW), "data": [[[1, 2]] * 10]}}, "age"),
    ("array model, a list", "/models/tree/predict", {"instances": [[1.0] * 29 + [[1.0, 2.0]]]}, 29),
]


@pytest.mark.parametrize("path,body,column", [c[1:] for c in OBJECTS], ids=[c[0] for c in OBJECTS])
def test_an_object_or_a_list_for_a_value_is_a_422_naming_where(client, trained, path, body, column):
    error = error_of(client.post(path, json=body), 422)
    assert error["column"] == column and isinstance(error["instance"], int), error
    assert "send a single value" in error["message"] or "not a number" in error["message"], error
    still_serves(client, trained)


def test_booleans_are_numbers_one_and_zero(client, trained):
    _, estimator, sample = trained["diabetes"]
    row = sample.iloc[:1].copy()
    row["sex"] = 1.0
    sent = {**{k: float(v) for k, v in row.iloc[0].items()}, "sex": True}
    answer = client.post("/models/diabetes/predict", json={"instances": [sent]}).get_json()
    assert answer["predictions"] == estimator.predict(row).tolist()
