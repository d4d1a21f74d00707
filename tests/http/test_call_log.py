"""The recent call log (GET /models/<name>/recent_call_log, serving/call_log.py): each caller sees
only its own successful predictions, newest first, for CALL_LOG_TTL seconds, at most
CALL_LOG_SIZE of them; recorded on the fast path and in Flask alike; in process or in a real
Redis, which two server processes share; Redis cut (a TCP proxy) fails no prediction and makes
reading the log a JSON 503."""
import json
import secrets
import time

import pytest
import requests

from conftest import REDIS, as_plain, models_env
from tcpproxy import TcpProxy
from test_fastpath import flask_only
from test_rate_limit_shared import fresh_key

REDIS_URL = f"redis://{REDIS[0]}:{REDIS[1]}/0"


def rows(trained, count=1):
    return as_plain(trained["cancer"][2])[:count]


def wait_for(read, expected_count, timeout=5.0):
    """The Redis backend sends its writes without waiting for Redis to apply them: poll until the calls are there."""
    deadline = time.monotonic() + timeout
    while True:
        calls = read()
        if len(calls) >= expected_count or time.monotonic() > deadline:
            return calls
        time.sleep(0.02)


@pytest.fixture(params=["memory", "redis"])
def backend_env(request):
    if request.param == "redis":
        request.getfixturevalue("redis_client")
        return {"REDIS_URL": REDIS_URL}
    return {}


def test_each_caller_sees_only_its_own_calls_newest_first_fast_path_and_flask(make_app, trained, backend_env):
    first, second = fresh_key(), fresh_key()
    app = make_app(MODELS=models_env(trained, "cancer", "text"), API_KEYS=f"{first},{second}", **backend_env)
    client, flask = app.test_client(), flask_only(app)
    one, two = rows(trained, 1), rows(trained, 2)
    assert client.post("/predict", json={"instances": one}, headers={"X-API-Key": first}).status_code == 200
    assert flask.post("/models/cancer/predict", json={"instances": two},
                      headers={"X-API-Key": first}).status_code == 200
    assert client.post("/models/cancer/versions/1/predict", json={"instances": one, "probabilities": True},
                       headers={"X-API-Key": second}).status_code == 200
    # not logged: a failed prediction, another model's call
    assert client.post("/models/cancer/predict", json={"instances": [[1]]},
                       headers={"X-API-Key": first}).status_code == 422
    assert client.post("/models/text/predict", json={"instances": ["refund"]},
                       headers={"X-API-Key": first}).status_code == 200

    def read(key, path="/models/cancer/recent_call_log"):
        answer = client.get(path, headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.json["model"] == "cancer"
        return answer.json["calls"]

    mine = wait_for(lambda: read(first), 2)
    assert [(call["endpoint"], call["version"], call["input"]) for call in mine] == [
        ("/models/cancer/predict", "1", {"instances": two}), ("/predict", "1", {"instances": one})]
    assert mine[0]["called_at"] >= mine[1]["called_at"] > time.time() - 60
    theirs = wait_for(lambda: read(second, "/model/cancer/recent_call_log"), 1)  # the singular alias
    assert [call["endpoint"] for call in theirs] == ["/models/cancer/versions/1/predict"]
    assert len(wait_for(lambda: client.get("/models/text/recent_call_log", headers={"X-API-Key": first})
                        .json["calls"], 1)) == 1
    assert client.get("/models/nope/recent_call_log", headers={"X-API-Key": first}).status_code == 404
    assert client.get("/models/cancer/recent_call_log").status_code == 401  # keys on: no caller, no log


def test_the_log_is_bounded_and_expires(make_app, trained, backend_env):
    app = make_app(MODELS=models_env(trained, "cancer"), CALL_LOG_SIZE="3", CALL_LOG_TTL="1",
                   CALL_LOG_INPUT_CHARS="50", **backend_env)
    client = app.test_client()
    # without keys the caller is the address: a fresh one per run keeps Redis' older calls out
    address = f"203.0.113.{secrets.randbelow(250) + 1}:{fresh_key()}"
    headers = {"X-Forwarded-For": address}
    app.wsgi_app.callers.trusted_hops = 1
    for count in (1, 2, 3, 4, 5):
        assert client.post("/predict", json={"instances": rows(trained, count)}, headers=headers).status_code == 200
    calls = wait_for(lambda: client.get("/models/cancer/recent_call_log", headers=headers).json["calls"], 3)
    time.sleep(0.2)  # any late write would show now
    calls = client.get("/models/cancer/recent_call_log", headers=headers).json["calls"]
    assert len(calls) == 3  # CALL_LOG_SIZE: the newest three, newest first
    assert all(isinstance(call["input"], str) and len(call["input"]) < 50 + 20 for call in calls)
    # a long body is cut from the text the client sent (the test client's json= writes ", " and ": ")
    sent = json.dumps({"instances": rows(trained, 5)})
    assert calls[0]["input"] == f"{sent[:50]}…({len(sent) - 50} more)"
    time.sleep(1.2)
    assert client.get("/models/cancer/recent_call_log", headers=headers).json["calls"] == []  # CALL_LOG_TTL


@pytest.mark.slow
def test_two_servers_with_one_redis_share_one_log(start_server, trained, redis_client):
    key = fresh_key()
    env = {"MODELS": models_env(trained, "cancer"), "API_KEYS": key, "REDIS_URL": REDIS_URL,
           "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2"}
    first, second = start_server(env), start_server(env)
    headers = {"X-API-Key": key}
    for server in (first, second, first, second):
        answer = requests.post(f"{server.url}/predict", json={"instances": rows(trained)}, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    def read(server):
        answer = requests.get(f"{server.url}/models/cancer/recent_call_log", headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["calls"]

    assert len(wait_for(lambda: read(first), 4)) == 4
    assert read(first) == read(second)


@pytest.mark.slow
def test_redis_cut_fails_no_prediction_and_reading_the_log_is_a_503(start_server, trained, redis_client):
    proxy = TcpProxy(*REDIS)
    key = fresh_key()
    headers = {"X-API-Key": key}
    try:
        server = start_server({"MODELS": models_env(trained, "cancer"), "API_KEYS": key,
                               "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "REDIS_TIMEOUT_MS": "200",
                               "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"})
        log_url = f"{server.url}/models/cancer/recent_call_log"

        def predict() -> float:
            started = time.perf_counter()
            answer = requests.post(f"{server.url}/predict", json={"instances": rows(trained)}, headers=headers,
                                   timeout=10)
            assert answer.status_code == 200, answer.text
            return time.perf_counter() - started

        predict()
        assert len(wait_for(lambda: requests.get(log_url, headers=headers, timeout=10).json()["calls"], 1)) == 1
        proxy.cut()
        slowest = max(predict() for _ in range(10))
        assert slowest < 0.2  # a write never waits for a reply, nor past REDIS_TIMEOUT_MS to connect
        answer = requests.get(log_url, headers=headers, timeout=10)
        assert answer.status_code == 503 and answer.json()["error"]["status"] == 503
        proxy.restore()
        deadline = time.monotonic() + 10  # Redis is asked again RETRY_SECONDS (5 s) after it failed

        def logged_again() -> bool:
            predict()
            return len(requests.get(log_url, headers=headers, timeout=10).json()["calls"]) >= 2

        while not logged_again():
            assert time.monotonic() < deadline, "calls were not logged again after Redis came back"
            time.sleep(0.25)
    finally:
        proxy.close()
    log = server.output()
    assert log.count("calls are not logged, predictions go on") == 1  # redis_outage's: once per interval
    assert "Redis answers again: calls are logged again" in log


def test_the_in_process_log_is_bounded_in_bytes_whoever_calls(monkeypatch):
    """Without API keys a caller is an address: a client rotating addresses must not grow a
    worker without bound. Calls are kept as JSON, expired ones dropped as a log is written, and
    the least recently written logs go first past MAX_LOCAL_BYTES."""
    from mlapi.serving import call_log

    monkeypatch.setattr(call_log, "MAX_LOCAL_BYTES", 50_000)
    log = call_log.LocalCallLog(ttl=3600, size=100)
    body = {"instances": [[0.123456789] * 40]}
    for caller in range(2_000):
        for _ in range(3):
            log.record(f"ip:10.0.{caller // 256}.{caller % 256}", "m", call_log.entry("/predict", "1", body, 2000))
    assert log.held_bytes <= 50_000
    assert log.held_bytes == sum(len(encoded) for calls in log.logs.values() for _, encoded in calls)
    assert log.recent("ip:10.0.7.207", "m")[0]["input"] == body  # the last caller's log is whole
    assert log.recent("ip:10.0.0.0", "m") == []  # the first ones went


def test_the_in_process_log_drops_expired_calls_as_it_is_written():
    from mlapi.serving import call_log

    log = call_log.LocalCallLog(ttl=60, size=100)
    old = {**call_log.entry("/predict", "1", {"instances": [[1.0]]}, 2000), "called_at": time.time() - 120}
    log.record("key:a", "m", old)
    log.record("key:a", "m", call_log.entry("/predict", "1", {"instances": [[2.0]]}, 2000))
    assert [call["input"] for call in log.recent("key:a", "m")] == [{"instances": [[2.0]]}]
    assert len(log.logs[("key:a", "m")]) == 1  # the expired call no longer held
