"""MAX_ROWS: a request with more rows than the limit is a 413 naming the limit and the setting,
refused on the decoded body before any row is converted, whichever body shape carries the rows
and whichever way in (the fast path, Flask, a real server)."""
from __future__ import annotations

import pytest
import requests

from conftest import models_env, to_rows

LIMIT = 5
CANCER_ROW = [1.0] * 30
DIABETES = {"age": 0.04, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04,
            "s2": -0.03, "s3": -0.04, "s4": -0.003, "s5": 0.02, "s6": -0.02}


def csr_rows(count: int) -> dict:
    return {"format": "csr", "shape": [count, 2], "data": [], "indices": [], "indptr": [0] * (count + 1)}


# (route, body of `rows` rows) for every shape that carries rows
BODIES = {
    "instances": ("/models/cancer/predict", lambda n: {"instances": [CANCER_ROW] * n}),
    "inputs": ("/models/cancer/predict", lambda n: {"inputs": [CANCER_ROW] * n}),
    "dataframe_split": ("/models/diabetes/predict",
                        lambda n: {"dataframe_split": {"columns": list(DIABETES), "data": [list(DIABETES.values())] * n}}),
    "dataframe_records": ("/models/diabetes/predict", lambda n: {"dataframe_records": [DIABETES] * n}),
    "texts": ("/models/text/predict", lambda n: {"instances": ["my invoice is wrong"] * n}),
    "features": ("/models/cancer/features", lambda n: {"instances": [CANCER_ROW] * n}),
    "dense predict_features": ("/models/cancer/predict_features", lambda n: {"features": [CANCER_ROW] * n}),
    "csr predict_features": ("/models/text/predict_features", lambda n: {"features": csr_rows(n)}),
}


@pytest.fixture
def clients(make_app, trained):
    """One client through the whole app (the fast path answers these routes), one to Flask alone."""
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    app = make_app(MODELS=models_env(trained, "cancer", "diabetes", "text"), MAX_ROWS=LIMIT)
    flask_alone = app.wsgi_app.app.flask_wsgi  # RequestPipeline(FastPath(Flask's own wsgi_app))
    return {"fast path": app.test_client(), "flask": Client(flask_alone, Response)}


@pytest.mark.parametrize("way_in", ["fast path", "flask"])
@pytest.mark.parametrize("shape", list(BODIES))
def test_more_rows_than_max_rows_is_a_413_naming_the_limit(clients, shape, way_in):
    path, body = BODIES[shape]
    client = clients[way_in]
    refused = client.post(path, json=body(LIMIT + 1))
    assert refused.status_code == 413, refused.get_data(as_text=True)
    error = refused.get_json()["error"]
    assert error["rows"] == LIMIT + 1 and error["max_rows"] == LIMIT
    assert f"the limit is {LIMIT} per request (MAX_ROWS)" in error["message"]
    if shape != "csr predict_features":  # an empty CSR matrix is refused for other reasons
        assert client.post(path, json=body(LIMIT)).status_code == 200


def test_the_limit_is_checked_before_any_row_is_read(clients):
    # Rows that would be a 422 each: the count alone refuses them, before they are converted.
    response = clients["fast path"].post("/models/cancer/predict", json={"instances": [["x"] * 30] * (LIMIT + 1)})
    assert response.status_code == 413


def test_a_real_server_refuses_past_the_default_limit_and_keeps_serving(start_server, trained, tmp_path):
    server = start_server({"MODELS": models_env(trained, "cancer"), "UWSGI_PROCESSES": "1"})
    path, estimator, sample = trained["cancer"]
    refused = requests.post(f"{server.url}/predict", json={"instances": [CANCER_ROW] * 10_001}, timeout=30)
    assert refused.status_code == 413 and refused.headers["Content-Type"] == "application/json"
    assert "the limit is 10000 per request (MAX_ROWS)" in refused.json()["error"]["message"]
    accepted = requests.post(f"{server.url}/predict", json={"instances": [CANCER_ROW] * 10_000}, timeout=30)
    assert accepted.status_code == 200 and len(accepted.json()["predictions"]) == 10_000
    answer = requests.post(f"{server.url}/predict", json={"instances": to_rows(sample)}, timeout=30).json()
    assert answer["predictions"] == estimator.predict(sample).tolist()
