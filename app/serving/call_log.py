"""The recent call log: each caller's own recent predictions, per model, newest first
(GET /models/<name>/recent_call_log), kept CALL_LOG_TTL seconds and at most CALL_LOG_SIZE calls
per caller and model, each input at most CALL_LOG_INPUT_CHARS characters of its JSON text.

Which calls: the successful answers of the native prediction routes (predict and
predict_features, for the default model, a model or a version). They are recorded by the
JsonBlueprint wrapper every such route runs through, from the fast path and from Flask alike
(http/routes/common.py): the one place that holds the decoded body and the answer (the model
and version that answered). The caller is the pipeline's (http/callers.py), handed in through
CURRENT_CALL, a context variable the pipeline sets before either path runs: the fast path's
handlers see no environ.

Two backends. Without REDIS_URL each worker process keeps its own log in memory: a caller
served by two workers sees the calls of the one that answers the read. With REDIS_URL one list
per caller and model (LPUSH, LTRIM, EXPIRE in one transaction; LRANGE to read), shared by every
process and instance. Recording never delays nor fails a prediction: Redis writes go through a
bounded queue to one thread per process; with Redis down the call is not logged (a warning at
most once a minute) and reading the log is a JSON 503.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from contextvars import ContextVar

import orjson

from mlapi.errors import MlapiError, cut

log = logging.getLogger(__name__)

# (caller, request path) of the request being answered; set by the request pipeline.
CURRENT_CALL: ContextVar[tuple[str, str] | None] = ContextVar("mlapi_current_call", default=None)
WARN_SECONDS = 60.0
QUEUE_SIZE = 10_000  # Redis writes waiting for the writer thread; past it calls go unlogged
MAX_LOCAL_CALLERS = 100_000  # (caller, model) logs one process keeps before dropping the oldest
MAX_LOCAL_BYTES = 32 * 1024 * 1024  # the JSON of every call one process keeps, all logs together
KEY_PREFIX = "mlapi:calllog:"


class CallLogUnavailable(MlapiError):
    status_code = 503


def entry(endpoint: str, version: str, body: dict, input_chars: int) -> dict:
    """One call as the log keeps it: the input is the request body, or its JSON text cut to
    `input_chars` characters (a string then) when longer: a caller's log stays small whatever
    it sends."""
    text = orjson.dumps(body).decode()
    return {"called_at": time.time(), "endpoint": endpoint, "version": version,
            "input": body if len(text) <= input_chars else cut(text, input_chars)}


class LocalCallLog:
    """Per process, in memory, bounded in bytes: each call is kept as its JSON (at most about
    CALL_LOG_INPUT_CHARS), calls past CALL_LOG_SIZE or older than CALL_LOG_TTL are dropped as
    the caller's log is written, and the least recently written logs go first once the process
    holds MAX_LOCAL_BYTES: a client rotating addresses (without API keys a caller is an address)
    cannot grow a worker without bound."""

    def __init__(self, ttl: int, size: int):
        self.ttl, self.size = ttl, size
        self.logs: OrderedDict[tuple[str, str], deque[tuple[float, bytes]]] = OrderedDict()
        self.held_bytes = 0
        self.lock = threading.Lock()

    def record(self, caller: str, model: str, call: dict) -> None:
        encoded = orjson.dumps(call)
        called_at = call["called_at"]
        with self.lock:
            calls = self.logs.pop((caller, model), None) or deque()
            calls.appendleft((called_at, encoded))
            self.held_bytes += len(encoded)
            while len(calls) > self.size or calls[-1][0] < called_at - self.ttl:
                self.held_bytes -= len(calls.pop()[1])
            self.logs[(caller, model)] = calls  # most recently written last
            while self.held_bytes > MAX_LOCAL_BYTES or len(self.logs) > MAX_LOCAL_CALLERS:
                _, dropped = self.logs.popitem(last=False)
                self.held_bytes -= sum(len(encoded) for _, encoded in dropped)

    def recent(self, caller: str, model: str) -> list[dict]:
        oldest = time.time() - self.ttl
        with self.lock:
            kept = [encoded for called_at, encoded in self.logs.get((caller, model), ()) if called_at >= oldest]
        return [orjson.loads(encoded) for encoded in kept]


class RedisCallLog:
    """One Redis list per caller and model, shared by every process and instance."""

    def __init__(self, url: str, ttl: int, size: int, timeout_ms: int):
        try:
            import redis
        except ImportError:
            from mlapi.errors import ConfigurationError

            raise ConfigurationError("REDIS_URL needs the Python module redis: install mlapi[redis]") from None
        self.error = redis.RedisError
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_ms / 1000,
                                           socket_connect_timeout=timeout_ms / 1000, retry_on_timeout=False)
        self.ttl, self.size = ttl, size
        self.queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.writer_pid = None  # the writer thread is started in the process that records (after fork)
        self.warned_at = -math.inf

    @staticmethod
    def key(caller: str, model: str) -> str:
        return f"{KEY_PREFIX}{caller}:{model}"

    def record(self, caller: str, model: str, call: dict) -> None:
        if self.writer_pid != os.getpid():
            self.writer_pid = os.getpid()
            threading.Thread(target=self._write_forever, name="call-log-writer", daemon=True).start()
        try:
            self.queue.put_nowait((self.key(caller, model), orjson.dumps(call)))
        except queue.Full:
            self._warn("the write queue is full")

    def _write_forever(self) -> None:
        while True:
            key, value = self.queue.get()
            try:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.lpush(key, value).ltrim(key, 0, self.size - 1).expire(key, self.ttl).execute()
            except self.error as exc:
                self._warn(f"{exc.__class__.__name__}: {exc}")

    def _warn(self, reason: str) -> None:
        now = time.monotonic()
        if now - self.warned_at >= WARN_SECONDS:
            self.warned_at = now
            log.warning("call log: a call was not logged (%s); predictions go on", cut(reason, 200))

    def recent(self, caller: str, model: str) -> list[dict]:
        try:
            values = self.client.lrange(self.key(caller, model), 0, self.size - 1)
        except self.error as exc:
            raise CallLogUnavailable(f"the call log is unavailable: Redis does not answer "
                                     f"({cut(exc.__class__.__name__, 40)}); try again later") from None
        oldest = time.time() - self.ttl  # EXPIRE ends the list; calls older than the TTL in it go too
        return [call for call in map(orjson.loads, values) if call["called_at"] >= oldest]


class CallLog:
    def __init__(self, backend, input_chars: int):
        self.backend = backend
        self.input_chars = input_chars

    def record(self, answer: dict, body: dict) -> None:
        """Log a successful prediction (`answer` names the model and version) for the current
        caller; never raises: a prediction is answered whatever becomes of its log."""
        call = CURRENT_CALL.get()
        if call is None:
            return  # not a request through the pipeline (a CLI command, a unit test)
        caller, path = call
        try:
            model = answer["model"]
            self.backend.record(caller, model["name"], entry(path, model["version"], body, self.input_chars))
        except Exception:
            log.exception("call log: a call was not logged")

    def recent(self, caller: str, model: str) -> list[dict]:
        return self.backend.recent(caller, model)


def build_call_log(settings) -> CallLog:
    if settings.redis_url:
        backend = RedisCallLog(settings.redis_url, settings.call_log_ttl, settings.call_log_size,
                               settings.redis_timeout_ms)
    else:
        backend = LocalCallLog(settings.call_log_ttl, settings.call_log_size)
    return CallLog(backend, settings.call_log_input_chars)
