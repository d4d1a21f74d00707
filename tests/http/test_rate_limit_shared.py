"""Rate limits across processes, through real uWSGI servers: two servers with one REDIS_URL
share one limit; Redis cut mid-run (a TCP proxy) fails no request and delays none past the
timeout, each process counting on its own meanwhile, and the shared counts are back once Redis
is; API keys never reach the server's log, only their ids."""
import secrets
import time

import pytest
import requests

from conftest import REDIS, as_plain, models_env
from mlapi.http.api_keys import key_id
from tcpproxy import TcpProxy



def fresh_key() -> str:
    """A caller of its own: counts left in Redis by earlier runs never meet this test's."""
    return secrets.token_urlsafe(24)


def shared_count(redis_client, key: str) -> int:
    found = list(redis_client.scan_iter(f"mlapi:ratelimit*{key_id(key)}*"))
    return sum(int(redis_client.get(name) or 0) for name in found)


@pytest.mark.slow
def test_two_servers_with_one_redis_share_one_limit(start_server, trained, redis_client):
    key = fresh_key()
    env = {"MODELS": models_env(trained, "cancer"), "API_KEYS": key, "RATE_LIMIT": "6/minute",
           "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0", "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2"}
    first, second = start_server(env), start_server(env)
    body = {"instances": as_plain(trained["cancer"][2])}
    headers = {"Authorization": f"Bearer {key}"}
    statuses = [requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=10).status_code
                for server in (first, second) * 4]
    assert statuses == [200] * 6 + [429] * 2  # four processes, one count
    assert requests.get(f"{second.url}/models", headers={"X-API-Key": key}, timeout=10).status_code == 429
    assert requests.get(f"{first.url}/healthz", timeout=10).status_code == 200
    assert shared_count(redis_client, key) >= 6


@pytest.mark.slow
def test_redis_cut_mid_run_fails_no_request_and_the_shared_counts_come_back(start_server, trained, redis_client):
    from mlapi.http import rate_limit

    proxy = TcpProxy(*REDIS)
    key = fresh_key()
    try:
        server = start_server({"MODELS": models_env(trained, "cancer"), "API_KEYS": key, "RATE_LIMIT": "1000/minute",
                               "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "REDIS_TIMEOUT_MS": "200",
                               "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"})
        body = {"instances": as_plain(trained["cancer"][2])}
        headers = {"X-API-Key": key}

        def call() -> float:
            started = time.perf_counter()
            answer = requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text
            return time.perf_counter() - started

        for _ in range(3):
            call()
        assert shared_count(redis_client, key) == 3
        proxy.cut()
        slowest = max(call() for _ in range(20))
        assert slowest < 0.2 + 0.5  # the Redis timeout, and a margin for a loaded machine
        assert shared_count(redis_client, key) == 3  # counted in the process meanwhile
        proxy.restore()
        time.sleep(rate_limit.RETRY_SHARED_SECONDS + 0.5)
        call()
        assert shared_count(redis_client, key) == 4  # shared again
    finally:
        proxy.close()
    log = server.output()
    assert log.count("each worker counts rate limits on its own") == 1  # once per interval, not per request
    assert "rate limits are shared again" in log


@pytest.mark.slow
def test_keys_never_reach_the_log_only_their_ids(start_server, trained, tmp_path):
    key, wrong = fresh_key(), fresh_key()
    keys = tmp_path / "api_keys"
    keys.write_text(f"# the tests\n{key}\n")
    server = start_server({"MODELS": models_env(trained, "cancer"), "API_KEYS_FILE": keys, "ACCESS_LOG": "1",
                           "LOG_LEVEL": "debug", "RATE_LIMIT": "3/minute", "UWSGI_PROCESSES": "1"})
    body = {"instances": as_plain(trained["cancer"][2])}
    answers = [requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=10).status_code
               for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}, {"X-API-Key": key},
                               {"Authorization": f"Bearer {wrong}"}, {"X-API-Key": wrong}, {"X-API-Key": wrong},
                               {"X-API-Key": wrong})]
    assert answers == [200, 200, 200, 401, 401, 401, 429]  # the wrong key's 401s count against the address
    assert requests.get(f"{server.url}/models/cancer/recent_call_log", headers={"X-API-Key": key},
                        timeout=10).status_code == 429
    server.stop()
    log = server.output()
    assert key not in log and wrong not in log  # the whole output: access log, debug lines, uWSGI's own
    assert f"key:{key_id(key)}" in log  # the access log names the caller by the key's id


def test_a_check_with_redis_is_one_round_trip_refused_or_not_and_answers_as_in_memory(redis_client):
    from mlapi.errors import RateLimited
    from mlapi.http.rate_limit import RateLimits

    spec = "2/minute;3/hour;50/day"
    shared, local = RateLimits(spec, f"redis://{REDIS[0]}:{REDIS[1]}/0"), RateLimits(spec)
    connection = shared.shared.get_connection()
    sent, execute = [], connection.execute_command

    def counted(*args, **options):
        sent.append(args[0])
        return execute(*args, **options)

    connection.execute_command = counted
    shared.check(f"key:warm-{fresh_key()}")  # the script is loaded into Redis once (NOSCRIPT, SCRIPT LOAD)
    caller = f"key:{fresh_key()}"

    def outcomes(limits):
        answers = []
        for _ in range(5):
            try:
                limits.check(caller)
                answers.append(200)
            except RateLimited as refused:
                answers.append((429, refused.details, refused.headers))
        return answers

    sent.clear()
    assert outcomes(shared) == outcomes(local)
    assert sent == ["EVALSHA"] * 5  # five checks, two of them refused: one command each
    counts = {name.decode().rsplit("/", 1)[1]: int(redis_client.get(name))
              for name in redis_client.scan_iter(f"mlapi:ratelimit:{caller}/*")}
    assert counts == {"minute": 5, "hour": 2, "day": 2}  # in order until one is over: refusals count no further
