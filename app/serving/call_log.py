"""The recent call log: each caller's own recent calls, per model, newest first
(GET /models/<name>/recent_call_log), kept CALL_LOG_TTL seconds and at most CALL_LOG_SIZE calls
per caller and model, each input at most CALL_LOG_INPUT_CHARS characters of its JSON text.
CALL_LOG_SIZE=0 turns it off: nothing is recorded and the route is a 404.

Which calls: the successful answers of every model route (predict, features and
predict_features for the default model, a model or a version; the single-input routes; predict
by id, whose input is the id). An error answer is not logged: the log holds what the model
answered, and a refused call is in the access log. The JSON POST routes are recorded by the
JsonBlueprint wrapper they all run through, from the fast path and from Flask alike, and
predict by id by a decorator of its view (http/routes/common.py). The caller and the path
called are the pipeline's (http/callers.py), handed in through CURRENT_CALL, a context variable
the pipeline sets before either path runs (the fast path's handlers see no environ); the model
and version that answered are the inference core's (metrics.current_model).

Two backends. Without REDIS_URL each worker process keeps its own log in memory: a caller
served by two workers sees the calls of the one that answers the read. With REDIS_URL one list
per caller and model (LPUSH, LTRIM, EXPIRE in one send; LRANGE to read), shared by every
process and instance. Recording never fails a prediction nor waits for Redis' reply: the writes
are sent on a connection of each process's own and their replies read later (redis_writes);
a busy worker sends its calls together every CALL_LOG_BATCH_MS, and those of a worker whose
requests stopped go once that interval has passed, within redis_writes.IDLE_SECONDS (0.1 s)
more: a read on another process or instance may miss that last moment's calls; a read on the
same process first sends its own (waiting at most the timeout for Redis to take them);
with Redis down the call is not logged (the shared
warning of redis_outage, at most once a minute, and one line when Redis is back) and reading the
log is a JSON 503.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from contextvars import ContextVar
from operator import itemgetter

from typing import Any

import orjson

from mlapi import metrics, redis_outage
from mlapi.errors import MlapiError, cut
from mlapi.redis_outage import RedisOutage
from mlapi.redis_writes import UnwaitedWrites, packed

log = logging.getLogger(__name__)

# (caller, request path) of the request being answered; set by the request pipeline.
CURRENT_CALL: ContextVar[tuple[str, str] | None] = ContextVar("mlapi_current_call", default=None)
MAX_LOCAL_CALLERS = 100_000  # (caller, model) logs one process keeps before dropping the oldest
MAX_LOCAL_BYTES = 32 * 1024 * 1024  # the JSON of every call one process keeps, all logs together
KEY_PREFIX = "mlapi:calllog:"
WRITE_BATCH_SECONDS = 0.025  # a busy worker's calls reach Redis together, this often


class CallLogUnavailable(MlapiError):
    status_code = 503


class CallLogOff(MlapiError):
    status_code = 404


def entry(endpoint: str, version: str, given: Any, input_chars: int, sent: bytes | None = None) -> dict:
    """One call as the log keeps it: the input is the request body (or the id asked for), or its
    JSON text cut to `input_chars` characters (a string then) when longer: a caller's log stays
    small whatever it sends. The input is encoded once, here (a Fragment the backends' own
    encoding copies): formatting a body's floats is most of what logging a call costs. So a body
    longer than that as sent (`sent`: its bytes, when `given` is the body) is cut from the
    client's own text, never encoded again only to be cut: 100 rows of 30 numbers cost ~800k
    instructions to encode (a quarter of the request), the cut a few thousand."""
    if sent is not None and len(sent) > input_chars and len(text := sent.decode("utf-8", "replace")) > input_chars:
        return {"called_at": time.time(), "endpoint": endpoint, "version": version, "input": cut(text, input_chars)}
    encoded = orjson.dumps(given)
    if len(encoded) > input_chars and len(decoded := encoded.decode()) > input_chars:  # bytes, then characters
        kept: Any = cut(decoded, input_chars)
    else:
        kept = orjson.Fragment(encoded)
    return {"called_at": time.time(), "endpoint": endpoint, "version": version, "input": kept}


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
    """One Redis list per caller and model, shared by every process and instance.

    A call is LPUSH, LTRIM, EXPIRE packed together (redis_writes: no request waits for the
    reply; a busy worker's calls go in one send every batch interval), without MULTI: another process's commands on the same list may come
    between them, but each write trims the list to CALL_LOG_SIZE and sets its TTL again, so any
    interleaving ends in a list of at most CALL_LOG_SIZE calls with a fresh TTL, and a reader
    (LRANGE 0 SIZE-1) never sees more whatever it reads between them."""

    def __init__(self, url: str, ttl: int, size: int, timeout_ms: int, retry_seconds: float = redis_outage.RETRY_SECONDS,
                 batch_seconds: float = WRITE_BATCH_SECONDS):
        try:
            import redis
        except ImportError:
            from mlapi.errors import ConfigurationError

            raise ConfigurationError("REDIS_URL needs the Python module redis: install mlapi[redis]") from None
        self.error = redis.RedisError
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_ms / 1000,
                                           socket_connect_timeout=timeout_ms / 1000, retry_on_timeout=False)
        self.ttl, self.size = ttl, size
        self.trim_to, self.ttl_text = str(size - 1).encode(), str(ttl).encode()
        self.outage = RedisOutage(log, "calls are not logged, predictions go on", "calls are logged again")
        # Once Redis failed, calls go unlogged for retry_seconds before one tries again (as the
        # cache and the rate limits do): with each call trying, every request paid a connect of
        # up to REDIS_TIMEOUT_MS while Redis hung, and concurrent ones queued behind it on the
        # writer's lock (8 clients: 0.8 s a request at a 200 ms timeout, measured in review).
        # Batched: a busy worker sends its calls every WRITE_BATCH_SECONDS, not one a request
        # (redis_writes says what each send cost).
        self.writes = UnwaitedWrites(self.client, self.outage, retry_seconds=retry_seconds,
                                     batch_seconds=batch_seconds)

    @staticmethod
    def key(caller: str, model: str) -> str:
        return f"{KEY_PREFIX}{caller}:{model}"

    def record(self, caller: str, model: str, call: dict) -> None:
        key = self.key(caller, model).encode()
        self.writes.send(packed(b"LPUSH", key, orjson.dumps(call)) + packed(b"LTRIM", key, b"0", self.trim_to)
                         + packed(b"EXPIRE", key, self.ttl_text), replies=3)

    def recent(self, caller: str, model: str) -> list[dict]:
        self.writes.flush()  # this process's own calls, kept for the next batch, are in Redis first
        try:
            values = self.client.lrange(self.key(caller, model), 0, self.size - 1)
        except self.error as exc:
            raise CallLogUnavailable(f"the call log is unavailable: Redis does not answer "
                                     f"({cut(exc.__class__.__name__, 40)}); try again later") from None
        self.outage.answered()  # the writes' replies are read by the next write: this may say it first
        oldest = time.time() - self.ttl  # EXPIRE ends the list; calls older than the TTL in it go too
        calls = [call for call in map(orjson.loads, values) if call["called_at"] >= oldest]
        # Workers push their calls in batches, so the list is in the order the batches came:
        # newest first is the calls' own times (a trimmed list keeps the latest sent).
        calls.sort(key=itemgetter("called_at"), reverse=True)
        return calls


class CallLog:
    """The call log of a server; `backend` None when it is off (CALL_LOG_SIZE=0)."""

    def __init__(self, backend, input_chars: int):
        self.backend = backend
        self.input_chars = input_chars

    def record(self, given: Any, sent: bytes | None = None) -> None:
        """Log the current request's successful call (`given`: its body, or the id it asked
        for; `sent`: the body's bytes as they came) of the model the inference core resolved;
        never raises: a prediction is answered whatever becomes of its log."""
        if self.backend is None:
            return
        call, model = CURRENT_CALL.get(), metrics.current_model.get()
        if call is None or model is None:
            return  # not a request through the pipeline (a CLI command, a unit test), or no model
        (caller, path), (name, version) = call, model
        try:
            self.backend.record(caller, name, entry(path, version, given, self.input_chars, sent))
        except Exception:
            log.exception("call log: a call was not logged")

    def recent(self, caller: str, model: str) -> list[dict]:
        if self.backend is None:
            raise CallLogOff("the recent call log is off on this server (CALL_LOG_SIZE=0)")
        return self.backend.recent(caller, model)


def build_call_log(settings) -> CallLog:
    if not settings.call_log_size:
        backend = None
    elif settings.redis_url:
        backend = RedisCallLog(settings.redis_url, settings.call_log_ttl, settings.call_log_size,
                               settings.redis_timeout_ms, batch_seconds=settings.call_log_batch_ms / 1000)
    else:
        backend = LocalCallLog(settings.call_log_ttl, settings.call_log_size)
    return CallLog(backend, settings.call_log_input_chars)
