"""The prediction cache across processes, through real uWSGI servers: two servers with one
REDIS_URL share entries (the second answers from_cache what the first computed); Redis cut
mid-run (a TCP proxy) fails no request and delays none past the timeout, and the cache is back
once Redis is."""
import secrets
import time

import pytest
import requests

from conftest import REDIS, models_env
from tcpproxy import TcpProxy


def fresh_text() -> str:
    """A text no earlier run has left in Redis."""
    return f"refund my invoice {secrets.token_hex(6)}"


def predict(server, text: str) -> dict:
    answer = requests.post(f"{server.url}/model/text/text_to_prediction", json={"text": text}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def from_cache_soon(server, text: str, timeout: float = 3.0) -> bool:
    """Whether the server answers `text` from the cache within `timeout` (writes are queued)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predict(server, text)["from_cache"]:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_two_servers_with_one_redis_share_the_cache(start_server, trained, redis_client):  # noqa: F811
    env = {"MODELS": models_env(trained, "text"), "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
           "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2"}
    first, second = start_server(env), start_server(env)
    text = fresh_text()
    computed = predict(first, text)
    assert computed["from_cache"] is False
    time.sleep(0.2)  # the write is sent before the answer; Redis may take a moment to apply it
    shared = predict(second, text)  # its first sight of the text: only Redis can know it
    assert shared["from_cache"] is True
    assert {**shared, "from_cache": False} == computed  # the same answer
    assert list(redis_client.scan_iter("mlapi:prediction:*", count=1000))


@pytest.mark.slow
def test_redis_cut_mid_run_fails_no_request_and_the_cache_comes_back(start_server, trained, redis_client):  # noqa: F811
    from mlapi.serving import cache_redis

    proxy = TcpProxy(*REDIS)
    try:
        server = start_server({"MODELS": models_env(trained, "text"), "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
                               "REDIS_TIMEOUT_MS": "200", "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"})
        before = fresh_text()
        assert predict(server, before)["from_cache"] is False
        assert from_cache_soon(server, before)
        proxy.cut()
        slowest = 0.0
        for _ in range(20):
            started = time.perf_counter()
            assert predict(server, before)["from_cache"] is False  # served, without the cache
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.2 + 0.5  # the Redis timeout, and a margin for a loaded machine
        proxy.restore()
        time.sleep(cache_redis.RETRY_SHARED_SECONDS + 0.5)
        assert predict(server, before)["from_cache"] is True  # the entry written before the cut
        after = fresh_text()
        predict(server, after)
        assert from_cache_soon(server, after)  # written again
    finally:
        proxy.close()
    log = server.output()
    # the cache's own warning (the call log warns of the outage too), once per interval, not per request
    assert log.count("predictions are served without the cache") == 1
    assert "the prediction cache is shared again" in log


def predict_rows(server, rows: list) -> tuple[str | None, dict]:
    answer = requests.post(f"{server.url}/models/cancer/predict", json={"instances": rows}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers.get("X-Cache"), answer.json()


def fresh_rows(trained, count: int = 3) -> list:
    """Rows no earlier run has left in Redis."""
    return (trained["cancer"][2][:count] + secrets.randbelow(10**6) / 10**9).tolist()


@pytest.mark.slow
def test_two_servers_share_native_predictions(start_server, trained, redis_client):  # noqa: F811
    env = {"MODELS": models_env(trained, "cancer"), "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
           "CACHE_ROUTES": "predict", "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"}
    first, second = start_server(env), start_server(env)
    rows = fresh_rows(trained)
    cached, computed = predict_rows(first, rows)
    assert cached == "MISS"
    assert computed["predictions"] == trained["cancer"][1].predict(rows).tolist()
    time.sleep(0.2)  # the writes are sent before the answer; Redis may take a moment to apply them
    cached, shared = predict_rows(second, rows)  # its first sight of the rows: only Redis can know them
    assert cached == "HIT" and shared == computed


@pytest.mark.slow
def test_redis_cut_fails_no_native_predict_and_the_cache_comes_back(start_server, trained, redis_client):  # noqa: F811
    from mlapi.serving import cache_redis

    proxy = TcpProxy(*REDIS)
    try:
        server = start_server({"MODELS": models_env(trained, "cancer"), "CACHE_ROUTES": "all",
                               "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "REDIS_TIMEOUT_MS": "200",
                               "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"})
        rows = fresh_rows(trained)
        assert predict_rows(server, rows)[0] == "MISS"
        time.sleep(0.2)
        assert predict_rows(server, rows)[0] == "HIT"
        proxy.cut()
        slowest = 0.0
        for _ in range(20):
            started = time.perf_counter()
            cached, body = predict_rows(server, rows)  # served, without the cache
            slowest = max(slowest, time.perf_counter() - started)
            assert cached == "MISS" and body["predictions"] == trained["cancer"][1].predict(rows).tolist()
        assert slowest < 0.2 + 0.5  # the Redis timeout, and a margin for a loaded machine
        proxy.restore()
        time.sleep(cache_redis.RETRY_SHARED_SECONDS + 0.5)
        assert predict_rows(server, rows)[0] == "HIT"  # the entries written before the cut
    finally:
        proxy.close()
    assert server.output().count("predictions are served without the cache") == 1
