"""The fast path (app/http/fastpath.py) answers JSON routes below Flask, and must answer exactly
as the Flask route does: same bodies, same errors, same metrics and log context (the request
pipeline around both), each request run and counted once."""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from mlapi import metrics
from mlapi.http.fastpath import rule_pattern
from mlapi.logs import CloudLoggingFormatter
from conftest import as_plain, models_env, to_rows

ALL = ("cancer", "tree", "diabetes", "ridge", "text")


@pytest.fixture
def app(make_app, trained):
    return make_app(MODELS=models_env(trained, *ALL))


def flask_only(app):
    """A test client for the same app with the fast path taken out."""
    class Client:
        def post(self, *args, **kwargs):
            pipeline = app.wsgi_app
            fast = pipeline.app
            pipeline.app = fast.flask_wsgi
            try:
                return app.test_client().post(*args, **kwargs)
            finally:
                pipeline.app = fast
    return Client()


def requests_counted(route, status, model=""):
    version = "1" if model else ""
    return metrics.REQUESTS.labels(route, "POST", model, version, str(status))._value.get()


def test_predict_is_answered_without_flask(app, trained):
    flask_requests = []
    app.before_request(lambda: flask_requests.append(1))
    client = app.test_client()
    rows = as_plain(trained["cancer"][2])
    estimator = trained["cancer"][1]
    for path in ("/predict", "/models/cancer/predict", "/models/cancer/versions/1/predict"):
        response = client.post(path, json={"instances": rows}, headers={"X-Request-ID": "abc-1"})
        assert response.status_code == 200 and response.headers["X-Request-ID"] == "abc-1"
        assert response.get_json()["predictions"] == as_plain(estimator.predict(trained["cancer"][2]))
        assert response.get_json()["probabilities"] == as_plain(estimator.predict_proba(trained["cancer"][2]))
    assert flask_requests == []
    generated = client.post("/predict", json={"instances": rows}).headers["X-Request-ID"]
    assert len(generated) == 32 and flask_requests == []
    assert client.get("/healthz").status_code == 200 and flask_requests == [1]


def _bodies(trained):
    cancer = as_plain(trained["cancer"][2])
    frame = trained["diabetes"][2]
    return [
        ("/models/cancer/predict", {"instances": cancer}),
        ("/models/cancer/predict", {"inputs": cancer, "parameters": {"probabilities": False}}),
        ("/models/tree/predict", {"instances": cancer}),
        ("/models/diabetes/predict", {"dataframe_split": {"columns": list(frame.columns), "data": to_rows(frame)}}),
        ("/models/ridge/predict", {"dataframe_records": frame.to_dict(orient="records")}),
        ("/models/diabetes/predict", {"instances": frame.to_dict(orient="records")}),
        ("/models/text/predict", {"instances": trained["text"][2]}),
        ("/models/cancer/predict", {"instances": [[1.0, 2.0]]}),                # 422: wrong width
        ("/models/cancer/predict", {"instances": [["a"] * 30]}),                # 422: not numbers
        ("/models/cancer/predict", {"rows": cancer}),                            # 400: no instances
        ("/models/cancer/predict", ["not", "an", "object"]),                     # 400
        ("/models/nope/predict", {"instances": cancer}),                         # 404 model
        ("/models/cancer/versions/9/predict", {"instances": cancer}),            # 404 version
        ("/models/cancer/predict", {"instances": cancer, "parameters": {"probabilities": "yes"}}),  # 400
    ]


def test_every_answer_is_the_flask_routes_answer(app, trained):
    fast, slow = app.test_client(), flask_only(app)
    for path, body in _bodies(trained):
        got, expected = fast.post(path, json=body), slow.post(path, json=body)
        assert (got.status_code, got.get_json()) == (expected.status_code, expected.get_json()), (path, body)
        assert got.headers["Content-Type"] == expected.headers["Content-Type"] == "application/json"
    for raw, content_type in ((b"{not json", "application/json"), (b"", "application/json"),
                              (b'{"instances": [[1]]}', "text/plain"),
                              (b'{"instances": [[1]]}', "application/json; charset=utf-8")):
        got = fast.post("/predict", data=raw, content_type=content_type)
        expected = slow.post("/predict", data=raw, content_type=content_type)
        assert (got.status_code, got.get_json()) == (expected.status_code, expected.get_json()), raw
    assert [fast.post("/predict", data=b"{", content_type="application/json").status_code,
            fast.post("/predict", data=b"x", content_type="text/plain").status_code] == [400, 415]


def test_too_large_and_unknown_routes_go_to_flask(make_app, trained):
    client = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES=200).test_client()
    big = client.post("/predict", json={"instances": as_plain(trained["cancer"][2])})
    assert big.status_code == 413 and "MAX_REQUEST_BYTES" in big.get_json()["error"]["message"]
    assert client.post("/predict/", json={"instances": [[1.0] * 30]}).status_code in (404, 308)
    assert client.get("/predict").status_code == 405


def test_failures_are_counted_once_and_successes_with_their_model(app, trained):
    client = app.test_client()
    route = "/models/<name>/predict"
    ok, bad = requests_counted(route, 200, "cancer"), requests_counted(route, 422, "cancer")
    assert client.post("/models/cancer/predict", json={"instances": as_plain(trained["cancer"][2])}).status_code == 200
    assert client.post("/models/cancer/predict", json={"instances": [[1.0]]}).status_code == 422
    assert requests_counted(route, 200, "cancer") == ok + 1
    assert requests_counted(route, 422, "cancer") == bad + 1


def test_a_bug_is_one_json_500_and_one_logged_traceback(app, trained, monkeypatch, caplog):
    inference = app.extensions["mlapi.services"].inference
    monkeypatch.setattr(inference, "predict", lambda *a, **k: 1 / 0)
    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        response = client.post("/predict", json={"instances": as_plain(trained["cancer"][2])})
    assert response.status_code == 500 and response.get_json()["error"]["type"] == "ZeroDivisionError"
    assert len([r for r in caplog.records if r.exc_info]) == 1
    monkeypatch.undo()
    assert client.post("/predict", json={"instances": as_plain(trained["cancer"][2])}).status_code == 200


def test_log_lines_inside_a_fast_request_carry_its_request_id(app, trained, monkeypatch):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CloudLoggingFormatter("proj-9"))
    logger = logging.getLogger("test.inside")
    logger.addHandler(handler)
    inference = app.extensions["mlapi.services"].inference
    original = inference.predict

    def logging_predict(*args, **kwargs):
        logger.warning("inside the model call")
        return original(*args, **kwargs)

    monkeypatch.setattr(inference, "predict", logging_predict)
    headers = {"X-Request-ID": "req-77", "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}
    response = app.test_client().post("/predict", json={"instances": as_plain(trained["cancer"][2])}, headers=headers)
    logger.removeHandler(handler)
    assert response.status_code == 200
    line = stream.getvalue()
    assert '"request_id":"req-77"' in line
    assert '"logging.googleapis.com/trace":"projects/proj-9/traces/105445aa7843bc8bf206b12000100000"' in line


def test_predictions_match_for_many_rows(app, trained):
    estimator = trained["cancer"][1]
    rows = np.random.default_rng(0).normal(size=(300, 30)) * 10 + 15
    body = app.test_client().post("/models/cancer/predict", json={"instances": rows.tolist()}).get_json()
    assert body["predictions"] == estimator.predict(rows).tolist()
    assert body["probabilities"] == estimator.predict_proba(rows).tolist()


def test_the_fast_path_takes_its_urls_from_the_flask_predict_rules(app):
    flask_rules = {rule.rule for rule in app.url_map.iter_rules("native.predict")}
    fast_rules = {rule for _, rule, handler in app.wsgi_app.app.routes if handler.__name__ == "predict"}
    assert fast_rules == flask_rules == {
        "/predict", "/models/<name>/predict", "/models/<name>/versions/<version>/predict"}
    with pytest.raises(ValueError, match="default converter"):
        rule_pattern("/models/<int:number>/predict")
