"""The request pipeline (app/http/pipeline.py) around the fast path and Flask: request id,
metrics and the access log written once for every request, whichever layer answers it; a
failing request runs once; any JSON route registered by a protocol adapter is fast."""
import io
import json
import logging

import pytest

from mlapi import metrics
from mlapi.errors import InvalidInput
from conftest import as_plain, models_env, to_rows


@pytest.fixture
def app(make_app, trained):
    return make_app(MODELS=models_env(trained, "cancer", "text"), ACCESS_LOG="1")


def flask_calls(app):
    calls = []
    app.before_request(lambda: calls.append(1))
    return calls


def count(route, method, status, model=""):
    return metrics.REQUESTS.labels(route, method, model, "1" if model else "", str(status))._value.get()


def test_the_access_log_logs_every_request_once_and_keeps_the_fast_path(app, trained, caplog):
    flask = flask_calls(app)
    client = app.test_client()
    rows = as_plain(trained["cancer"][2])
    with caplog.at_level(logging.INFO, logger="mlapi.access"):
        statuses = [client.post("/predict", json={"instances": rows}).status_code,
                    client.post("/predict", json={"instances": [[1.0]]}).status_code,
                    client.get("/healthz").status_code,
                    client.get("/no/such/route").status_code]
    assert statuses == [200, 422, 200, 404]
    assert len(flask) == 2  # the two predict requests never reached Flask
    lines = [r for r in caplog.records if r.name == "mlapi.access"]
    assert [(r.http_request["requestUrl"], r.http_request["status"]) for r in lines] == [
        ("/predict", 200), ("/predict", 422), ("/healthz", 200), ("/no/such/route", 404)]
    assert all(int(r.http_request["responseSize"]) > 0 for r in lines)


def test_every_answer_carries_a_request_id_and_is_counted_once_under_its_rule(app, trained):
    client = app.test_client()
    before = (count("/models/<name>/predict", "POST", 422, "cancer"), count("<unmatched>", "GET", 404),
              count("/healthz", "GET", 200))
    answers = [client.post("/models/cancer/predict", json={"instances": [[1.0]]}, headers={"X-Request-ID": "r-1"}),
               client.get("/nowhere", headers={"X-Request-ID": "r-2"}),
               client.get("/healthz", headers={"X-Request-ID": "r-3"})]
    assert [a.headers["X-Request-ID"] for a in answers] == ["r-1", "r-2", "r-3"]
    after = (count("/models/<name>/predict", "POST", 422, "cancer"), count("<unmatched>", "GET", 404),
             count("/healthz", "GET", 200))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1]


def test_a_failing_request_runs_once(app, trained, monkeypatch):
    inference = app.extensions["mlapi.services"].inference
    calls = []

    def rejecting(*args, **kwargs):
        calls.append(1)
        raise InvalidInput("no such thing")

    monkeypatch.setattr(inference, "predict", rejecting)
    response = app.test_client().post("/predict", json={"instances": as_plain(trained["cancer"][2])})
    assert response.status_code == 422 and response.get_json()["error"]["message"] == "no such thing"
    assert calls == [1]


def test_the_text_routes_are_fast_and_answer_as_flask_does(app, trained):
    flask = flask_calls(app)
    fast = app.test_client()
    fresh = {"skip_cache": True}  # both ways compute the answer (the cache is tested elsewhere)
    bodies = [("/model/text/text_to_prediction", {"text": "refund my invoice", "echo_input": True, **fresh}),
              ("/model/text/text_to_features", {"text": "refund my invoice", **fresh}),
              ("/model/cancer/features_to_prediction", {"features": as_plain(trained["cancer"][2])[0], **fresh}),
              ("/model/text/text_to_prediction", {"txt": "missing field"}),
              ("/model/cancer/text_to_prediction", {"text": "a tabular model"}),
              ("/model/nope/text_to_prediction", {"text": "unknown model"})]
    answers = [fast.post(path, json=body) for path, body in bodies]
    assert flask == []
    pipeline = app.wsgi_app
    fast_path, pipeline.app = pipeline.app, pipeline.app.flask_wsgi  # Flask alone
    try:
        expected = [app.test_client().post(path, json=body) for path, body in bodies]
    finally:
        pipeline.app = fast_path
    assert len(flask) == len(bodies)
    assert [(a.status_code, a.get_json()) for a in answers] == [(e.status_code, e.get_json()) for e in expected]
    assert [a.status_code for a in answers] == [200, 200, 200, 400, 422, 404]
    estimator = trained["text"][1]
    assert answers[0].get_json()["top"]["label"] == estimator.predict(["refund my invoice"])[0]


class Unreadable(io.RawIOBase):
    """A body that must not be read: the test fails if anything tries."""

    def read(self, size=-1):
        raise AssertionError("the body was read")


def call(app, environ: dict):
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=status, headers=dict(headers))

    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(method="POST", path="/predict", content_type="application/json").get_environ()
    base.update(environ)
    body = b"".join(app.wsgi_app(base, start_response))
    return captured["status"], captured["headers"], json.loads(body)


def test_a_declared_length_over_the_limit_is_refused_unread(make_app, trained):
    app = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES="1000")
    status, headers, body = call(app, {"CONTENT_LENGTH": "1001", "wsgi.input": Unreadable()})
    assert status.startswith("413 ") and headers["Connection"] == "close"
    assert body["error"]["status"] == 413 and "1000 bytes" in body["error"]["message"]


def test_a_chunked_body_is_read_whole_or_refused_past_the_limit(make_app, trained):
    _, estimator, sample = trained["cancer"]
    app = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES="5000")
    payload = json.dumps({"instances": as_plain(sample)}).encode()
    # What gunicorn and granian hand the app for a chunked body: no CONTENT_LENGTH, the chunks decoded.
    chunked = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked"}
    status, _, body = call(app, {**chunked, "wsgi.input": io.BytesIO(payload)})
    assert status.startswith("200 ") and body["predictions"] == estimator.predict(sample).tolist()
    status, _, body = call(app, {**chunked, "wsgi.input": io.BytesIO(payload * 10)})
    assert status.startswith("413 ") and body["error"]["status"] == 413


def test_a_request_past_the_timeout_is_answered_504_in_json(make_app, tmp_path):
    import joblib

    from model_doubles import SlowModel

    joblib.dump(SlowModel(), tmp_path / "slow.joblib")
    app = make_app(MODELS=f"slow={tmp_path / 'slow.joblib'}", REQUEST_TIMEOUT="1")
    client = app.test_client()
    response = client.post("/predict", json={"instances": [[30]]})  # stopped at 1 s, not 30
    assert response.status_code == 504 and response.json["error"]["status"] == 504
    assert "REQUEST_TIMEOUT" in response.json["error"]["message"]
    assert client.post("/predict", json={"instances": [[0]]}).status_code == 200


@pytest.mark.parametrize("path, content_type", [
    ("/predict", "application/json"),                 # answered by the fast path
    ("/predict", "text/plain"),                       # by Flask (the fast path takes JSON only)
    ("/models/cancer/predict", "application/json"),
    ("/no/such/route", "application/octet-stream"),  # by nobody
], ids=["fast-path", "flask", "fast-path-named", "unrouted"])
def test_one_body_limit_for_every_route_refused_unread(make_app, trained, path, content_type):
    """MAX_REQUEST_BYTES is decided once, in the pipeline, in front of every layer."""
    app = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES="1000")
    status, headers, body = call(app, {"PATH_INFO": path, "CONTENT_TYPE": content_type, "CONTENT_LENGTH": "1001",
                                       "wsgi.input": Unreadable()})
    assert status.startswith("413 ") and headers["Connection"] == "close"
    assert "the limit is 1000 bytes (MAX_REQUEST_BYTES)" in body["error"]["message"]


@pytest.mark.parametrize("declared", [" 1001", "1001 ", "1001\t", " 1001 "])
def test_a_padded_length_over_the_limit_is_the_same_413(make_app, trained, declared):
    """RFC 9110 lets a field value carry optional whitespace, and uWSGI passes a trailing one on:
    still the same length, refused unread over the limit (the fast path's int() would read it)."""
    app = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES="1000")
    status, headers, _ = call(app, {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": declared,
                                    "wsgi.input": Unreadable()})
    assert status.startswith("413 ") and headers["Connection"] == "close"


def test_a_padded_length_within_the_limit_is_served(make_app, trained):
    _, estimator, sample = trained["cancer"]
    body = json.dumps({"instances": to_rows(sample[:2])}).encode()
    app = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES="100000")
    status, _, answer = call(app, {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": f"{len(body)} ",
                                   "wsgi.input": io.BytesIO(body)})
    assert status.startswith("200 ") and answer["predictions"] == estimator.predict(sample[:2]).tolist()


@pytest.mark.parametrize("declared", ["+1001", "1_001", "+12", "1_2", "\xb2", "1e3", "-1", "12abc"])
def test_a_content_length_that_is_no_number_is_a_client_error(make_app, trained, declared):
    """"\xb2" (a latin-1 byte a server may hand on) is a digit to str.isdigit that int() refuses:
    it must not escape the pipeline as a crash."""
    app = make_app(MODELS=models_env(trained, "cancer"), MAX_REQUEST_BYTES="1000")
    status, _, body = call(app, {"CONTENT_LENGTH": declared, "wsgi.input": io.BytesIO(b'{"instances": [[1.0]]}')})
    assert status.startswith("400 ") and body["error"]["status"] == 400


class StopsMidway(io.RawIOBase):
    """A body whose client stops sending: the server's read fails, as uWSGI's does after its
    socket-timeout ("timeout during read(N) on wsgi.input")."""

    def read(self, size=-1):
        raise OSError(f"timeout during read({size}) on wsgi.input")

    def readinto(self, buffer):  # what werkzeug's stream calls
        return self.read(len(buffer))


@pytest.mark.parametrize("flask_alone", [False, True], ids=["fast-path", "flask"])
def test_a_body_that_stops_arriving_is_a_408_not_a_crash(make_app, trained, flask_alone, caplog):
    _, estimator, sample = trained["cancer"]
    app = make_app(MODELS=models_env(trained, "cancer"))
    pipeline = app.wsgi_app
    fast_path = pipeline.app
    if flask_alone:
        pipeline.app = fast_path.flask_wsgi
    try:
        status, headers, body = call(app, {"CONTENT_LENGTH": "100", "wsgi.input": StopsMidway()})
        good = json.dumps({"instances": to_rows(sample[:2])}).encode()
        after, _, answer = call(app, {"CONTENT_LENGTH": str(len(good)), "wsgi.input": io.BytesIO(good)})
    finally:
        pipeline.app = fast_path
    assert status.startswith("408 ") and headers["Connection"] == "close", (status, headers)
    assert body["error"]["status"] == 408 and "timeout during read(" in body["error"]["message"]
    assert "unhandled error" not in caplog.text
    assert after.startswith("200 ") and answer["predictions"] == estimator.predict(sample[:2]).tolist()
