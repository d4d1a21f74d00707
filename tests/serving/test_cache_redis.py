"""The prediction cache in real Redis (127.0.0.1:6379): entries shared between caches (as between
processes), stored as JSON with CACHE_TTL_SECONDS, writes that never wait, and Redis cut (a TCP
proxy) answered as misses within the timeout, logged once, the cache back when Redis is."""
import logging
import secrets
import time

import pytest

from conftest import REDIS
from mlapi.config import Settings
from mlapi.serving import cache_redis
from mlapi.serving.cache import MISSING, build_prediction_cache
from mlapi.serving.cache_redis import KEY_PREFIX, RedisPredictionCache
from mlapi.serving.model import InstanceAnswer
from tcpproxy import TcpProxy

URL = f"redis://{REDIS[0]}:{REDIS[1]}/0"


def written(cache: RedisPredictionCache, key: str, timeout: float = 2.0):
    """The value once the background writer has stored it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cache.get(key)
        if value is not MISSING:
            return value
        time.sleep(0.01)
    return MISSING


def test_redis_url_chooses_redis(redis_client):
    cache = build_prediction_cache(Settings.from_env({"REDIS_URL": URL, "CACHE_TTL_SECONDS": "9"}))
    assert isinstance(cache, RedisPredictionCache) and cache.enabled and cache.ttl_seconds == 9


def test_two_caches_on_one_redis_share_entries_as_json_with_the_ttl(redis_client):
    writer, reader = RedisPredictionCache(URL, 60, 200), RedisPredictionCache(URL, 60, 200)
    key = secrets.token_hex(8)
    result = InstanceAnswer("billing", [0.25, 0.75])
    writer.put(key, result)
    assert written(reader, key) == result
    features_key = secrets.token_hex(8)
    writer.put(features_key, [0.0, 0.5, 1.25])
    assert written(reader, features_key) == [0.0, 0.5, 1.25]
    raw = redis_client.get(KEY_PREFIX + key)
    assert raw.startswith(b"{")  # JSON, never a pickle
    assert 55 <= redis_client.ttl(KEY_PREFIX + key) <= 60


def test_entries_expire_after_the_ttl(redis_client):
    cache = RedisPredictionCache(URL, 1, 200)
    key = secrets.token_hex(8)
    cache.put(key, [1.0])
    assert written(cache, key) == [1.0]
    time.sleep(1.6)
    assert cache.get(key) is MISSING


def test_a_write_does_not_wait_for_redis(redis_client):
    proxy = TcpProxy(*REDIS)
    try:
        cache = RedisPredictionCache(f"redis://127.0.0.1:{proxy.port}/0", 60, 200)
        cache.put(secrets.token_hex(8), [1.0])  # starts the writer
        proxy.cut()
        started = time.perf_counter()
        for _ in range(100):
            cache.put(secrets.token_hex(8), [1.0])
        assert time.perf_counter() - started < 0.05  # 100 writes queued, none sent meanwhile
        # Let the writer fail on them (dropped while Redis is down) within this test: its
        # warning is this test's, not the next one's.
        deadline = time.monotonic() + 2
        while not cache.outage.down_until and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.outage.down_until
    finally:
        proxy.close()


def test_redis_cut_answers_misses_within_the_timeout_logs_once_and_comes_back(redis_client, monkeypatch, caplog):
    monkeypatch.setattr(cache_redis, "RETRY_SHARED_SECONDS", 0.5)
    proxy = TcpProxy(*REDIS)
    try:
        cache = RedisPredictionCache(f"redis://127.0.0.1:{proxy.port}/0", 60, 200)
        key = secrets.token_hex(8)
        cache.put(key, [1.0])
        assert written(cache, key) == [1.0]
        proxy.cut()
        with caplog.at_level(logging.WARNING, logger=cache_redis.__name__):
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                assert cache.get(key) is MISSING
                timings.append(time.perf_counter() - started)
            assert max(timings) < 0.2 + 0.3  # one timeout at most, then Redis is not asked
            assert sorted(timings)[-2] < 0.01  # only the first waited
            proxy.restore()
            time.sleep(0.6)
            assert cache.get(key) == [1.0]  # the entry is there again
    finally:
        proxy.close()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Redis does not answer" in message for message in messages) == 1
    assert any("shared again" in message for message in messages)


def test_a_redis_that_never_answers_costs_one_timeout_then_nothing(caplog):
    """Slow, not down: connections are accepted and nothing is ever answered."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        cache = RedisPredictionCache(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", 60, 100)
        with caplog.at_level(logging.WARNING, logger=cache_redis.__name__):
            timings = []
            for index in range(10):
                started = time.perf_counter()
                assert cache.get(f"k{index}") is MISSING
                cache.put(f"k{index}", [1.0])
                timings.append(time.perf_counter() - started)
        assert timings[0] < 0.1 + 0.3  # the timeout, and a margin for a loaded machine
        assert max(timings[1:]) < 0.01  # Redis is not asked again for a while
        assert "Redis does not answer (TimeoutError" in caplog.text
    finally:
        listener.close()


@pytest.mark.parametrize("stored", [b"not json", b"[1, 2]", b"7", b'{"predictions": [1]}'])
def test_an_entry_this_code_did_not_write_is_a_miss_not_an_error(redis_client, stored):
    cache = RedisPredictionCache(URL, 60, 200)
    key = secrets.token_hex(8)
    redis_client.set(KEY_PREFIX + key, stored, ex=60)
    assert cache.get(key) is MISSING


def test_many_entries_written_in_one_send_and_read_back_in_order(redis_client):
    writer, reader = RedisPredictionCache(URL, 60, 200), RedisPredictionCache(URL, 60, 200)
    keys = [secrets.token_hex(8) for _ in range(50)]
    writer.put_many([(key, InstanceAnswer(index, [0.5, 0.5])) for index, key in enumerate(keys) if index % 2 == 0])
    assert written(reader, keys[-2]) == InstanceAnswer(48, [0.5, 0.5])
    found = reader.get_many(keys)
    assert found == [InstanceAnswer(i, [0.5, 0.5]) if i % 2 == 0 else MISSING for i in range(50)]


def test_a_forked_worker_connects_its_writer_before_its_first_write(redis_client):
    """The first write of a worker used to connect synchronously, inside a request."""
    import os

    cache = RedisPredictionCache(URL, 60, 200)
    pid = os.fork()
    if pid == 0:  # the worker: connected already, by the fork hook
        os._exit(0 if cache.writes.connection._sock is not None and cache.writes.pid == os.getpid() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_burst_of_writes_is_not_taken_for_an_outage(redis_client):
    """Thousands of entries (one request of many instances) owe thousands of replies at once."""
    cache = RedisPredictionCache(URL, 60, 200)
    keys = [secrets.token_hex(8) for _ in range(5000)]
    for start in range(0, 5000, 2500):
        cache.put_many([(key, InstanceAnswer(1, None)) for key in keys[start:start + 2500]])
    assert not cache.outage.down_until
    assert written(cache, keys[-1]) == InstanceAnswer(1, None)
    cache.put_many([(keys[0], InstanceAnswer(2, None))])  # reads the replies that have arrived
    assert not cache.outage.down_until
