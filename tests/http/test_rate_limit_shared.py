"""Rate limits across processes, through real uWSGI servers: two servers with one REDIS_URL
share one limit; Redis cut mid-run (a TCP proxy) fails no request and delays none past the
timeout, each process counting on its own meanwhile, and the shared counts are back once Redis
is; API keys never reach the server's log, only their ids."""
import contextlib
import secrets
import threading
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


def caught_up(redis_client, key: str, count: int) -> bool:
    """Whether the shared count reaches `count` within a second (hits far from the limit are
    sent every FLUSH_SECONDS), and stays there."""
    deadline = time.monotonic() + 1
    while shared_count(redis_client, key) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)
    return shared_count(redis_client, key) == count


@contextlib.contextmanager
def server_behind_a_proxy(start_server, trained, rate_limit: str):
    """(proxy, key, server): one worker whose Redis (REDIS_TIMEOUT_MS 200) is reached through
    `proxy`, which the test may cut and restore; the proxy is closed after."""
    proxy = TcpProxy(*REDIS)
    key = fresh_key()
    try:
        yield proxy, key, start_server({
            "MODELS": models_env(trained, "cancer"), "API_KEYS": key, "RATE_LIMIT": rate_limit,
            "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "REDIS_TIMEOUT_MS": "200",
            "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"})
    finally:
        proxy.close()


def served_in(client, url: str, key: str, **request) -> float:
    """Seconds a request with `key` took, asserting it was served."""
    started = time.perf_counter()
    answer = client.request("POST" if request else "GET", url, headers={"X-API-Key": key}, timeout=10, **request)
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - started


@pytest.mark.slow
def test_two_servers_with_one_redis_share_one_limit(start_server, trained, redis_client):
    key = fresh_key()
    env = {"MODELS": models_env(trained, "cancer"), "API_KEYS": key, "RATE_LIMIT": "5/minute",
           "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0", "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2"}
    first, second = start_server(env), start_server(env)
    body = {"instances": as_plain(trained["cancer"][2])}
    headers = {"Authorization": f"Bearer {key}"}
    statuses = [requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=10).status_code
                for server in (first, second) * 4]
    assert statuses == [200] * 5 + [429] * 3  # four processes, one count: a small limit is exact
    assert requests.get(f"{second.url}/models", headers={"X-API-Key": key}, timeout=10).status_code == 429
    assert requests.get(f"{first.url}/healthz", timeout=10).status_code == 200
    assert shared_count(redis_client, key) >= 5


@pytest.mark.slow
def test_redis_cut_mid_run_fails_no_request_and_the_shared_counts_come_back(start_server, trained, redis_client):
    from mlapi.http import rate_limit

    with server_behind_a_proxy(start_server, trained, "1000/minute") as (proxy, key, server):
        body = {"instances": as_plain(trained["cancer"][2])}

        def call() -> float:
            return served_in(requests, f"{server.url}/predict", key, json=body)

        for _ in range(3):
            call()
        assert caught_up(redis_client, key, 3)  # far from 1000: sent by the worker's flusher
        proxy.cut()
        slowest = max(call() for _ in range(20))
        assert slowest < 0.2 + 0.5  # the Redis timeout, and a margin for a loaded machine
        assert shared_count(redis_client, key) == 3  # counted in the process meanwhile
        proxy.restore()
        time.sleep(rate_limit.RETRY_SHARED_SECONDS + 0.5)
        call()
        assert caught_up(redis_client, key, 4)  # shared again
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
    sent = commands_sent(shared)
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
    assert sent == [("EVALSHA", "check")] * 5  # five checks, two of them refused: one command each
    counts = {name.decode().rsplit("/", 1)[1]: int(redis_client.get(name))
              for name in redis_client.scan_iter(f"mlapi:ratelimit:{caller}/*")}
    assert counts == {"minute": 5, "hour": 2, "day": 2}  # in order until one is over: refusals count no further


def commands_sent(limits) -> list[tuple[str, str]]:
    """The commands a RateLimits sends from now on: (command, "check" or the thread sending it)."""
    client = limits.shared.hit_windows.registered_client
    sent, execute, checking = [], client.execute_command, threading.current_thread()

    def counted(*args, **options):
        thread = threading.current_thread()
        sent.append((args[0], "check" if thread is checking else thread.name))
        return execute(*args, **options)

    client.execute_command = counted
    return sent


def flushes_sent(limits) -> list[str]:
    """The flushes a RateLimits sends from now on: the name of the thread sending each."""
    shared, sent = limits.shared, []
    send = shared._send_flush

    def counted(now):
        if shared.unsent:
            sent.append(threading.current_thread().name)
        return send(now)

    shared._send_flush = counted
    return sent


def test_far_from_the_limit_a_check_waits_for_no_round_trip_and_redis_catches_up(redis_client):
    """Checks spread over ~0.5 s: none waits for Redis but the first; the checks send their
    hits themselves, once per FLUSH_SECONDS, and the last ones reach Redis once they stop."""
    from mlapi.http import rate_limit_shared
    from mlapi.http.rate_limit import RateLimits

    limits = RateLimits("100000/minute;1000000/hour", f"redis://{REDIS[0]}:{REDIS[1]}/0")
    sent = commands_sent(limits)
    flushes = flushes_sent(limits)
    key = fresh_key()
    caller = f"key:{key_id(key)}"
    limits.check(caller)  # a count never read: asked
    assert [command for command in sent if command[1] == "check"] == [("EVALSHA", "check")]
    sent.clear()
    started = time.monotonic()
    for _ in range(500):
        limits.check(caller)
        time.sleep(0.001)
    seconds = time.monotonic() - started
    waited = [command for command in sent if command[1] == "check"]
    assert len(waited) <= 10, waited  # none but when a flush's answer is late (a loaded machine)
    assert caught_up(redis_client, key, 2 * 501)  # both windows, the last hits sent by the idle flusher
    by_checks = flushes.count(threading.current_thread().name)
    assert by_checks >= 5, flushes  # the checks send the hits: no thread in a busy worker
    # One flush per interval, not per check (the idle flusher sends what is left once they stop).
    assert len(flushes) <= seconds / rate_limit_shared.FLUSH_SECONDS + 2, flushes
    assert set(flushes) <= {threading.current_thread().name, "rate-limit-idle-flusher"}


def test_a_flush_answer_read_late_is_not_judged_as_fresh(redis_client):
    """A worker that sent a flush and went idle reads its answer late: that count is as old as
    the flush, so its next checks ask Redis, and two workers never pass the limit together."""
    from mlapi.errors import RateLimited
    from mlapi.http.rate_limit import RateLimits

    proxy = TcpProxy(*REDIS, reply_delay=0.002)  # Redis in another zone
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        idle, busy = RateLimits("100/minute", url), RateLimits("100/minute", url)
        caller = f"key:{fresh_key()}"
        idle.check(caller)
        time.sleep(0.03)
        idle.check(caller)  # counted ahead, and a flush sent whose answer nobody reads for a while
        served = 2
        for _ in range(120):  # the other worker spends the rest of the limit meanwhile
            try:
                busy.check(caller)
                served += 1
            except RateLimited:
                pass
        time.sleep(0.5)
        results = []

        def one():
            try:
                idle.check(caller)
                results.append(1)
            except RateLimited:
                pass

        burst = [threading.Thread(target=one) for _ in range(10)]  # a threaded worker's requests
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
        assert served + len(results) == 100
    finally:
        proxy.close()


def test_hits_left_behind_a_flush_under_way_reach_redis_once_requests_stop(redis_client):
    from mlapi.http import rate_limit_shared
    from mlapi.http.rate_limit import RateLimits

    proxy = TcpProxy(*REDIS, reply_delay=0.005)  # the answer still on its way when requests stop
    try:
        limits = RateLimits("100000/minute", f"redis://127.0.0.1:{proxy.port}/0")
        key = fresh_key()
        caller = f"key:{key_id(key)}"
        limits.check(caller)  # asked
        time.sleep(0.03)
        limits.check(caller)  # counted ahead; sends a flush
        limits.check(caller)  # counted ahead while that flush is under way: left unsent
        assert limits.shared.sent_at and limits.shared.unsent
        time.sleep(2 * rate_limit_shared.IDLE_FLUSH_SECONDS + 0.2)
        assert shared_count(redis_client, key) == 3
        assert not limits.shared.unsent and not limits.shared.sent_at
    finally:
        proxy.close()


def test_a_redis_restart_while_idle_is_no_outage(redis_client):
    """Redis drops every connection (a restart, a failover) and is back at once: the next flush
    finds its connection closed and makes a new one; no outage, limits stay shared."""
    from mlapi.http.rate_limit import RateLimits

    proxy = TcpProxy(*REDIS)
    try:
        limits = RateLimits("100000/minute", f"redis://127.0.0.1:{proxy.port}/0")
        caller = f"key:{fresh_key()}"
        for _ in range(50):
            limits.check(caller)
            time.sleep(0.002)
        time.sleep(0.5)
        assert limits.shared.connection is not None
        proxy.cut()
        proxy.restore()
        time.sleep(0.05)
        for _ in range(20):
            limits.check(caller)
            time.sleep(0.002)
        assert limits.shared.outage.asking() and not limits.shared.outage.down_until
    finally:
        proxy.close()


def test_two_processes_near_the_limit_are_exact():
    """Two processes' counts (two RateLimits) on one caller: counted ahead of Redis only by an
    eighth of what is left, then each check asks Redis: exactly the limit succeeds."""
    from mlapi.errors import RateLimited
    from mlapi.http.rate_limit import RateLimits

    url = f"redis://{REDIS[0]}:{REDIS[1]}/0"
    first, second = RateLimits("100/minute", url), RateLimits("100/minute", url)
    caller = f"key:{fresh_key()}"
    served = 0
    for _ in range(150):
        for limits in (first, second):
            try:
                limits.check(caller)
                served += 1
            except RateLimited:
                pass
    assert served == 100


@pytest.mark.slow
def test_a_flush_redis_does_not_take_delays_no_request_and_warns_once(start_server, trained, redis_client):
    """Redis cut while a flush of a worker's hits is under way: served, counted in the process, one warning."""
    with server_behind_a_proxy(start_server, trained, "10000/minute") as (proxy, key, server):
        session = requests.Session()
        served_in(session, f"{server.url}/models", key)
        assert caught_up(redis_client, key, 1)
        proxy.cut()
        slowest = max(served_in(session, f"{server.url}/models", key) for _ in range(300))  # ahead, then per process
        assert slowest < 0.2 + 0.5
        assert shared_count(redis_client, key) <= 301
    log = server.output()
    assert log.count("each worker counts rate limits on its own") == 1
    assert "Traceback" not in log
