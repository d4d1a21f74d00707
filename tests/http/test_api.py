"""The HTTP API on Flask's test client, against models trained in the tests."""

import numpy as np
import pytest

from conftest import to_rows

ALL = ("cancer", "tree", "diabetes", "ridge", "text")


def post(client, path, body, **kwargs):
    return client.post(path, json=body, **kwargs)


def ok(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("name", ALL)
def test_predictions_equal_the_models_own(client, trained, name):
    _, estimator, sample = trained[name]
    body = ok(post(client, f"/models/{name}/predict", {"instances": to_rows(sample) if name != "text" else sample}))
    assert body["model"] == {"name": name, "version": "1"}
    assert body["predictions"] == estimator.predict(sample).tolist()
    if hasattr(estimator, "predict_proba"):
        assert body["probabilities"] == estimator.predict_proba(sample).tolist()
        assert body["classes"] == estimator.classes_.tolist()
    else:
        assert "probabilities" not in body


def test_labels_keep_their_types(client, trained):
    ints = ok(post(client, "/models/cancer/predict", {"instances": to_rows(trained["cancer"][2])}))
    assert all(type(p) is int for p in ints["predictions"]) and ints["classes"] == [0, 1]
    strs = ok(post(client, "/models/text/predict", {"instances": ["refund please"]}))
    assert all(type(p) is str for p in strs["predictions"])


def test_default_model_is_the_first_listed(client, trained):
    _, estimator, sample = trained["cancer"]
    assert ok(post(client, "/predict", {"instances": to_rows(sample)}))["predictions"] == estimator.predict(sample).tolist()


def test_objects_keyed_by_feature_name_in_any_order(client, trained):
    _, estimator, frame = trained["diabetes"]
    records = [dict(reversed(list(row.items()))) for row in frame.to_dict(orient="records")]
    body = ok(post(client, "/models/diabetes/predict", {"instances": records}))
    assert body["predictions"] == estimator.predict(frame).tolist()


def test_mlflow_dataframe_split_and_records_and_inputs(client, trained):
    _, estimator, frame = trained["ridge"]
    expected = estimator.predict(frame).tolist()
    shuffled = frame[list(reversed(frame.columns))]
    split = {"columns": list(shuffled.columns), "data": shuffled.to_numpy().tolist()}
    assert ok(post(client, "/models/ridge/predict", {"dataframe_split": split}))["predictions"] == expected
    records = frame.to_dict(orient="records")
    assert ok(post(client, "/models/ridge/predict", {"dataframe_records": records}))["predictions"] == expected
    assert ok(post(client, "/models/ridge/predict", {"inputs": frame.to_numpy().tolist()}))["predictions"] == expected


def test_probabilities_can_be_turned_off(client, trained):
    _, estimator, sample = trained["cancer"]
    body = ok(post(client, "/models/cancer/predict",
                   {"instances": to_rows(sample), "parameters": {"probabilities": False}}))
    assert body["predictions"] == estimator.predict(sample).tolist() and "probabilities" not in body


def test_versions_side_by_side_default_is_last_listed(make_app, trained):
    app = make_app(MODELS=f"m={trained['cancer'][0]},m={trained['tree'][0]}")
    client = app.test_client()
    sample = to_rows(trained["cancer"][2])
    v1 = ok(post(client, "/models/m/versions/1/predict", {"instances": sample}))
    v2 = ok(post(client, "/models/m/versions/2/predict", {"instances": sample}))
    default = ok(post(client, "/models/m/predict", {"instances": sample}))
    assert v1["probabilities"] == trained["cancer"][1].predict_proba(trained["cancer"][2]).tolist()
    assert v2["probabilities"] == trained["tree"][1].predict_proba(trained["cancer"][2]).tolist()
    assert default["model"] == {"name": "m", "version": "2"} and default["probabilities"] == v2["probabilities"]
    listing = ok(client.get("/models/m"))
    assert listing["default_version"] == "2" and [v["version"] for v in listing["versions"]] == ["1", "2"]


def test_metadata_comes_from_the_model(client, trained):
    meta = ok(client.get("/models/ridge/versions/1"))
    assert meta["task"] == "regression" and meta["input_kind"] == "tabular"
    assert meta["feature_names_in"] == list(trained["ridge"][2].columns) and meta["n_features_in"] == 10
    assert meta["has_feature_step"] is True and len(meta["sha256"]) == 64 and meta["sklearn_version"]
    text = ok(client.get("/models/text"))["versions"][0]
    assert text["input_kind"] == "text" and text["task"] == "classification"
    assert text["classes"] == trained["text"][1].classes_.tolist()
    tree = ok(client.get("/models/tree/versions/1"))
    assert tree["has_feature_step"] is False and tree["feature_names_in"] is None and tree["n_features_in"] == 30
    listed = ok(client.get("/models"))
    assert listed["default"] == "cancer" and {m["name"] for m in listed["models"]} == set(ALL)


@pytest.mark.parametrize("name", ["text", "cancer", "tree"])
def test_features_round_trip_through_predict_features(client, trained, name):
    _, estimator, sample = trained[name]
    instances = sample if name == "text" else to_rows(sample)
    features = ok(post(client, f"/models/{name}/features", {"instances": instances}))["features"]
    if name == "text":
        assert features["format"] == "csr" and features["shape"][0] == len(sample)
        expected = estimator[:-1].transform(sample).toarray()
        dense = np.zeros(features["shape"])
        for row in range(features["shape"][0]):
            span = slice(features["indptr"][row], features["indptr"][row + 1])
            dense[row, features["indices"][span]] = features["data"][span]
        np.testing.assert_array_equal(dense, expected)
    elif name == "tree":
        assert features == to_rows(sample)  # a bare estimator's features are its input
    body = ok(post(client, f"/models/{name}/versions/1/predict_features", {"features": features}))
    assert body["predictions"] == estimator.predict(sample).tolist()
    assert body["probabilities"] == estimator.predict_proba(sample).tolist()


def test_single_input_routes(client, trained):
    estimator = trained["text"][1]
    text = "I was charged twice for my plan"
    first = ok(post(client, "/model/text/text_to_features", {"text": text, "echo_input": True}))
    assert first["from_cache"] is False and first["input"] == text
    assert first["features"] == estimator[:-1].transform([text]).toarray()[0].tolist()
    assert ok(post(client, "/model/text/text_to_features", {"text": text}))["from_cache"] is True
    assert ok(post(client, "/model/text/text_to_features", {"text": text, "skip_cache": True}))["from_cache"] is False

    proba = estimator.predict_proba([text])[0]
    label = estimator.predict([text])[0]
    prediction = ok(post(client, "/model/text/text_to_prediction", {"text": text}))
    assert prediction["prediction"] == dict(zip(estimator.classes_.tolist(), proba.tolist()))
    assert prediction["top"] == {"label": label, "value": proba.max()} and "input" not in prediction
    assert ok(post(client, "/model/text/text_to_prediction", {"text": text}))["from_cache"] is True

    from_features = ok(post(client, "/model/text/features_to_prediction", {"features": first["features"]}))
    assert from_features["prediction"] == prediction["prediction"] and from_features["from_cache"] is False

    regression = ok(post(client, "/model/ridge/features_to_prediction",
                         {"features": trained["ridge"][1][:-1].transform(trained["ridge"][2]).tolist()[0]}))
    assert regression["prediction"] == {"value": trained["ridge"][1].predict(trained["ridge"][2])[0]}


def test_health_and_readiness(client):
    assert ok(client.get("/healthz")) == {"status": "ok"}
    assert sorted(ok(client.get("/readyz"))["ready"]) == sorted(f"{n}:1" for n in ALL)


def test_the_cache_keeps_nan_infinity_and_null_apart(client, trained):
    """orjson writes NaN and ±Infinity as null: a key built from its encoding alone gave
    [Infinity, ...] the cached answer of [NaN, ...]. Rows of numbers are keyed by the floats the
    model is given, where null is NaN."""
    rest = ", ".join(str(v) for v in trained["tree"][2][0][1:])

    def send(literal):
        response = client.post("/model/tree/features_to_prediction", data=f'{{"features": [{literal}, {rest}]}}',
                               content_type="application/json")
        return response.status_code, response.get_json()

    status, first = send("NaN")
    assert status == 200 and first["from_cache"] is False
    assert send("NaN") == (200, {**first, "from_cache": True})
    for literal in ("Infinity", "-Infinity"):
        status, body = send(literal)
        assert status == 422 and "infinit" in str(body).lower(), body
    # null is a missing value, NaN to the model: the same input, the same entry
    status, body = send("null")
    assert status == 200 and body == {**first, "from_cache": True}
