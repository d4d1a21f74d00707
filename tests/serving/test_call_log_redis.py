"""The call log in real Redis (serving/call_log.py RedisCallLog): a call is sent without waiting
(redis_writes), kept with the others of its batch interval, readable by another client once sent,
the list bounded and expiring; Redis cut (a TCP proxy) or hung delays no call past the timeout,
is warned once, and calls are logged again once Redis is back; a read waits for its process's
own calls without holding up the writes of the requests beside it."""
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


def test_calls_are_sent_without_waiting_and_read_by_another_client(redis_client):
    log, caller = RedisCallLog(URL, ttl=60, size=3, timeout_ms=200), f"key:{secrets.token_hex(6)}"
    for value in range(5):
        log.record(caller, "m", call(float(value)))
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


def inputs(values: list[bytes]) -> list[float]:
    return [call_log.orjson.loads(value)["input"]["instances"][0][0] for value in values]


def test_a_burst_goes_together_after_the_batch_interval_and_an_idle_worker_sends_what_it_kept(redis_client):
    """The first call after a quiet moment goes at once; the ones within the batch interval are
    kept and reach Redis together once it has passed, with no further request (the idle thread)."""
    log = RedisCallLog(URL, ttl=60, size=100, timeout_ms=200, batch_seconds=0.6)
    caller = f"key:{secrets.token_hex(6)}"
    started = time.monotonic()
    for value in range(20):
        log.record(caller, "m", call(float(value)))
    assert time.monotonic() - started < 0.3, "the burst itself took longer than the test allows"
    time.sleep(0.15)
    assert inputs(redis_client.lrange(RedisCallLog.key(caller, "m"), 0, -1)) == [0.0]  # the rest kept
    values = stored(redis_client, caller, 20, timeout=2.0)
    assert inputs(values) == [float(value) for value in reversed(range(20))]  # each once, newest first
    assert log.writes.idle_thread.is_alive()


def test_a_read_on_the_same_process_sees_its_own_kept_calls_at_once(redis_client):
    log = RedisCallLog(URL, ttl=60, size=100, timeout_ms=200, batch_seconds=5.0)
    caller = f"key:{secrets.token_hex(6)}"
    for value in range(5):
        log.record(caller, "m", call(float(value)))
    assert [c["input"]["instances"][0][0] for c in log.recent(caller, "m")] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert inputs(redis_client.lrange(RedisCallLog.key(caller, "m"), 0, -1)) == [4.0, 3.0, 2.0, 1.0, 0.0]


def test_a_forked_worker_never_sends_the_calls_its_parent_kept(redis_client):
    """Nothing written twice: calls the parent kept at fork are the parent's to send."""
    import os

    log = RedisCallLog(URL, ttl=60, size=100, timeout_ms=200, batch_seconds=5.0)
    caller = f"key:{secrets.token_hex(6)}"
    log.record(caller, "m", call(1.0))  # sent at once
    log.record(caller, "m", call(2.0))  # kept
    pid = os.fork()
    if pid == 0:
        log.record(caller, "m", call(3.0))  # the worker's first: at once, alone
        log.writes.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(inputs(stored(redis_client, caller, 2))) == [1.0, 3.0]
    log.writes.flush()
    assert sorted(inputs(redis_client.lrange(RedisCallLog.key(caller, "m"), 0, -1))) == [1.0, 2.0, 3.0]


def test_requests_queued_on_a_hung_redis_do_not_each_wait_out_a_connect():
    """A port that takes connections and never answers (Redis hung): of 8 requests at once, one
    waits the timeout to connect; the others, queued behind it, find Redis down and go on."""
    import socket

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)  # the kernel completes the handshake; nothing ever answers
    try:
        log = RedisCallLog(f"redis://127.0.0.1:{hung.getsockname()[1]}/0", ttl=60, size=10, timeout_ms=150)
        waits, start = [], threading.Barrier(8)

        def record(value: float) -> None:
            start.wait()
            started = time.perf_counter()
            log.record("key:hung", "m", call(value))
            waits.append(time.perf_counter() - started)

        threads = [threading.Thread(target=record, args=(float(n),)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.outage.down_until
        assert max(waits) < 0.3, sorted(waits)  # one timeout, not eight in a row (1.2 s)
    finally:
        hung.close()


def test_a_read_waiting_for_its_own_calls_holds_up_no_request_writing_beside_it(redis_client):
    proxy = TcpProxy(*REDIS, reply_delay=0.2)
    caller = f"key:{secrets.token_hex(6)}"
    try:
        log = RedisCallLog(f"redis://127.0.0.1:{proxy.port}/0", ttl=60, size=100, timeout_ms=1000, batch_seconds=5.0)
        log.record(caller, "m", call(0.0))  # connects (slowly: every answer 0.2 s late)
        log.record(caller, "m", call(1.0))  # kept
        read = threading.Thread(target=log.recent, args=(caller, "m"))
        read.start()
        time.sleep(0.05)  # the read is waiting for its flush's replies
        started = time.perf_counter()
        log.record(caller, "m", call(2.0))
        assert time.perf_counter() - started < 0.1
        read.join()
        assert not log.outage.down_until
    finally:
        proxy.close()
    assert sorted(inputs(stored(redis_client, caller, 2))) == [0.0, 1.0]


def test_writes_kept_before_a_fork_without_its_hooks_are_not_the_childs_to_send(redis_client):
    """(Where the at-fork hooks do not run: a uWSGI ini without py-call-uwsgi-fork-hooks.) The
    process id changed under the writer: the writes it kept are another process's."""
    log = RedisCallLog(URL, ttl=60, size=100, timeout_ms=200, batch_seconds=5.0)
    caller = f"key:{secrets.token_hex(6)}"
    log.record(caller, "m", call(1.0))
    log.record(caller, "m", call(2.0))  # kept
    log.writes.pid = -1  # as a child forked without hooks sees it: not its own pid
    log.writes.flush()
    time.sleep(0.1)
    assert inputs(redis_client.lrange(RedisCallLog.key(caller, "m"), 0, -1)) == [1.0]
