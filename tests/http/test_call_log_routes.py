"""Which calls the recent call log records (serving/call_log.py): every model route a caller
calls — native predict, features and predict_features in every URL form, the single-input
routes, predict by id (its input the id) — with the route as called and the version served, on
the fast path and in Flask alike; error answers are not logged; two API keys, and two client
addresses behind a trusted proxy, never see each other's calls, whatever X-Forwarded-For a
client forges; CALL_LOG_SIZE=0 records nothing and the route is a JSON 404."""
import secrets

import numpy as np
import pandas as pd

from conftest import as_plain, models_env
from mlapi.http.api_keys import key_id
from mlapi.store.database import make_engine
from mlapi.store.ingest import import_rows, read_rows
from test_call_log import REDIS_URL, backend_env, rows, wait_for  # noqa: F401 (backend_env: a fixture)
from test_fastpath import flask_only
from test_rate_limit_shared import fresh_key


def stocked_store(tmp_path) -> str:
    """A SQLite feature store holding three texts, ids 1 to 3."""
    url = f"sqlite:///{tmp_path}/store.db"
    path = tmp_path / "texts.csv"
    pd.DataFrame({"id": ["1", "2", "3"], "text": ["refund my last invoice", "the app crashes on my phone",
                                                  "cannot log in to my account"]}).to_csv(path, index=False)
    engine = make_engine(url)
    import_rows(engine, "features", "id", read_rows(path))
    engine.dispose()
    return url


def test_every_model_route_is_logged_as_called_with_the_version_served(make_app, trained, tmp_path, backend_env):
    mine, theirs = fresh_key(), fresh_key()
    app = make_app(MODELS=models_env(trained, "text", "cancer"), API_KEYS=f"{mine},{theirs}",
                   FEATURE_STORE_URL=stocked_store(tmp_path), **backend_env)
    client, flask = app.test_client(), flask_only(app)
    headers = {"X-API-Key": mine}
    text = {"instances": ["refund my invoice"]}
    one = {"text": "the app crashes"}
    calls = [  # (method, path, body): every model route of the text model, each URL form
        ("post", "/predict", text), ("post", "/models/text/predict", text),
        ("post", "/models/text/versions/1/predict", text), ("post", "/models/text/features", text),
        ("post", "/models/text/versions/1/features", text),
        ("post", "/model/text/text_to_features", one), ("post", "/model/text/text_to_prediction", one),
        ("flask", "/model/text/text_to_prediction", {**one, "skip_cache": True}),
        ("get", "/predict/1", None), ("get", "/models/text/predict/2", None),
        ("get", "/models/text/versions/1/predict/3", None)]
    for method, path, body in calls:
        send = flask.post if method == "flask" else getattr(client, method)
        answer = send(path, json=body, headers=headers) if body is not None else send(path, headers=headers)
        assert answer.status_code == 200, (path, answer.get_data(as_text=True))
    # Error answers are not logged: an unknown id, a wrong body, an unknown version.
    assert client.get("/models/text/predict/404", headers=headers).status_code == 404
    assert client.post("/model/text/text_to_prediction", json={"text": 3}, headers=headers).status_code in (400, 422)
    assert client.post("/models/text/versions/9/predict", json=text, headers=headers).status_code == 404

    def read(key, model="text", count=0):
        return wait_for(lambda: client.get(f"/models/{model}/recent_call_log", headers={"X-API-Key": key})
                        .json["calls"], count)

    logged = read(mine, count=len(calls))
    assert [(call["endpoint"], call["version"], call["input"]) for call in logged] == [
        (path, "1", body if body is not None else path.rsplit("/", 1)[1]) for _, path, body in reversed(calls)]
    assert read(theirs) == []  # another key's caller

    # The cancer model's own routes go to its own log: predict_features and features_to_prediction.
    features = client.post("/models/cancer/features", json={"instances": rows(trained, 2)}, headers=headers).json
    matrix = {"instances": features["features"]}
    assert client.post("/models/cancer/versions/1/predict_features", json=matrix, headers=headers).status_code == 200
    flat = {"features": features["features"][0]}
    assert client.post("/model/cancer/features_to_prediction", json=flat, headers=headers).status_code == 200
    assert [call["endpoint"] for call in read(mine, "cancer", 3)] == [
        "/model/cancer/features_to_prediction", "/models/cancer/versions/1/predict_features", "/models/cancer/features"]
    assert len(read(mine, count=len(calls))) == len(calls)  # nothing of the cancer model's in the text log


def test_two_addresses_behind_a_trusted_proxy_see_only_their_own_whatever_they_forge(make_app, trained, backend_env):
    app = make_app(MODELS=models_env(trained, "text"), TRUSTED_PROXY_HOPS="1", **backend_env)
    client = app.test_client()
    # Fresh addresses per run: Redis keeps earlier runs' calls for CALL_LOG_TTL.
    first, second = (f"2001:db8:{secrets.randbelow(65535):x}:{n}::7" for n in (1, 2))

    def through_proxy(client_address, forged="198.51.100.1"):
        return {"X-Forwarded-For": f"{forged}, {client_address}"}

    assert client.post("/model/text/text_to_prediction", json={"text": "first's secret"},
                       headers=through_proxy(first)).status_code == 200
    assert client.post("/model/text/text_to_prediction", json={"text": "second's own"},
                       headers=through_proxy(second, forged=first)).status_code == 200

    def read(headers, count=0):
        return wait_for(lambda: client.get("/model/text/recent_call_log", headers=headers).json["calls"], count)

    assert [call["input"]["text"] for call in read(through_proxy(first), 1)] == ["first's secret"]
    assert [call["input"]["text"] for call in read(through_proxy(second), 1)] == ["second's own"]
    # Forging the first client's address to the left of the proxy's entry reads one's own log only.
    assert [call["input"]["text"] for call in read(through_proxy(second, forged=f"{first}, {first}"), 1)] == [
        "second's own"]
    assert read({"X-Forwarded-For": first}) != []  # the proxy's own entry is the caller: the first's log


def test_an_input_is_cut_to_call_log_input_chars(make_app, trained):
    client = make_app(MODELS=models_env(trained, "text"), CALL_LOG_INPUT_CHARS="40").test_client()
    long_text = "refund " * 50
    assert client.post("/model/text/text_to_prediction", json={"text": long_text}).status_code == 200
    assert client.get("/predict/1").status_code >= 400  # no such record: not logged
    (call,) = client.get("/model/text/recent_call_log").json["calls"]
    # cut from the body as the client sent it (the test client's json= writes ": ")
    assert isinstance(call["input"], str) and call["input"].startswith('{"text": "refund refund')
    assert len(call["input"]) < 40 + 20 and call["input"].endswith("more)")


def test_call_log_size_0_records_nothing_and_the_route_is_a_json_404(make_app, trained, redis_client):
    key = fresh_key()
    app = make_app(MODELS=models_env(trained, "cancer"), API_KEYS=key, CALL_LOG_SIZE="0", REDIS_URL=REDIS_URL)
    client = app.test_client()
    headers = {"X-API-Key": key}
    assert app.extensions["mlapi.services"].call_log.backend is None
    for path in ("/predict", "/models/cancer/predict"):
        assert client.post(path, json={"instances": rows(trained)}, headers=headers).status_code == 200
    for path in ("/models/cancer/recent_call_log", "/model/cancer/recent_call_log"):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 404 and answer.is_json
        assert "off on this server (CALL_LOG_SIZE=0)" in answer.json["error"]["message"]
    assert list(redis_client.scan_iter(f"mlapi:calllog:key:{key_id(key)}*")) == []


def test_a_model_served_to_an_unknown_caller_is_not_logged_outside_a_request():
    """A CLI command or a batch job predicts with no request around it: nothing to log, no error."""
    from mlapi.serving.call_log import CallLog, LocalCallLog

    log = CallLog(LocalCallLog(60, 10), 100)
    log.record({"instances": as_plain(np.zeros((1, 2)))})
    assert log.backend.logs == {}


def test_a_request_leaves_no_caller_behind_it(make_app, trained):
    """The caller a request set is gone once it is answered: a later call in the same thread
    outside any request (a CLI command, a job) is nobody's (it leaked, and was logged as the
    last request's caller)."""
    from mlapi.serving.call_log import CURRENT_CALL

    client = make_app(MODELS=models_env(trained, "cancer")).test_client()
    assert client.post("/predict", json={"instances": rows(trained)}).status_code == 200
    assert CURRENT_CALL.get() is None
