"""The call log in real Redis (serving/call_log.py RedisCallLog): a call is sent without a thread
and without waiting (redis_writes), readable by another client at once, the list bounded and
expiring; Redis cut (a TCP proxy) delays no call past the timeout, is warned once, and calls
are logged again once Redis is back."""
import logging
import secrets
import threading
import time

from conftest import REDIS
from mlapi.serving import call_log
from mlapi.serving.call_log import RedisCallLog, entry
from tcpproxy import TcpProxy

URL = f"redis://{REDIS[0]}:{REDIS[1]}/0"


def call(value: float) -> dict:
    return entry("/predict", "1", {"instances": [[value]]}, 2000)


def stored(redis_client, caller: str, count: int, timeout: float = 0.5) -> list[bytes]:
    """The list as another client reads it, once it holds `count` calls (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        values = redis_client.lrange(RedisCallLog.key(caller, "m"), 0, -1)
        if len(values) >= count or time.monotonic() > deadline:
            return values
        time.sleep(0.005)


def test_calls_are_sent_without_a_thread_and_read_by_another_client_at_once(redis_client):
    log, caller = RedisCallLog(URL, ttl=60, size=3, timeout_ms=200), f"key:{secrets.token_hex(6)}"
    for value in range(5):
        log.record(caller, "m", call(float(value)))
    assert not [thread.name for thread in threading.enumerate() if thread.name == "call-log-writer"]
    stored(redis_client, caller, 3)
    time.sleep(0.05)  # the last LTRIM too
    values = redis_client.lrange(RedisCallLog.key(caller, "m"), 0, -1)
    assert [call_log.orjson.loads(value)["input"] for value in values] == [
        {"instances": [[4.0]]}, {"instances": [[3.0]]}, {"instances": [[2.0]]}]  # newest first, trimmed
    assert 0 < redis_client.ttl(RedisCallLog.key(caller, "m")) <= 60
    assert [c["input"] for c in log.recent(caller, "m")][0] == {"instances": [[4.0]]}


def test_a_forked_worker_records_on_its_own_connection(redis_client):
    import os

    log, caller = RedisCallLog(URL, ttl=60, size=10, timeout_ms=200), f"key:{secrets.token_hex(6)}"
    log.record(caller, "m", call(1.0))
    pid = os.fork()
    if pid == 0:  # the worker: its own connection, made at fork; the parent's is not touched
        log.record(caller, "m", call(2.0))
        os._exit(0 if log.writes.pid == os.getpid() and not log.outage.down_until else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(stored(redis_client, caller, 2)) == 2
    log.record(caller, "m", call(3.0))  # the parent's connection still in step with its replies
    assert len(stored(redis_client, caller, 3)) == 3 and not log.outage.down_until


def test_redis_cut_delays_no_call_warns_once_and_logging_comes_back(redis_client, caplog):
    proxy = TcpProxy(*REDIS)
    caller = f"key:{secrets.token_hex(6)}"
    try:
        log = RedisCallLog(f"redis://127.0.0.1:{proxy.port}/0", ttl=60, size=100, timeout_ms=200,
                          retry_seconds=0.3)
        log.record(caller, "m", call(1.0))
        assert len(stored(redis_client, caller, 1)) == 1
        proxy.cut()
        with caplog.at_level(logging.WARNING, logger=call_log.__name__):
            timings = []
            for value in range(20):
                started = time.perf_counter()
                log.record(caller, "m", call(float(value)))
                timings.append(time.perf_counter() - started)
                time.sleep(0.02)
            assert max(timings) < 0.2  # never a wait past REDIS_TIMEOUT_MS
            assert log.outage.down_until
            proxy.restore()
            time.sleep(0.35)  # retry_seconds: not asked again before
            log.record(caller, "m", call(99.0))
            values = stored(redis_client, caller, 2)
            assert call_log.orjson.loads(values[0])["input"] == {"instances": [[99.0]]}
            # A later write reads the replies of the one before, once the proxy has passed them
            # on (its thread may lag behind Redis on a loaded machine: Redis holds the value
            # before its reply reaches us).
            deadline = time.monotonic() + 5
            while not any("calls are logged again" in record.getMessage() for record in caplog.records):
                assert time.monotonic() < deadline, "no write read a reply after Redis came back"
                log.record(caller, "m", call(100.0))
                time.sleep(0.02)
    finally:
        proxy.close()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("calls are not logged" in message for message in messages) == 1
