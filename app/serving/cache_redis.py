"""The prediction cache in Redis (REDIS_URL): one set of entries for every process and instance.

Same interface as the in-process PredictionCache (`enabled`, `get_many`, `put_many`): a request's
instances are looked up with one MGET, one round trip whatever their number. Values are stored as
JSON (orjson), never pickles: whoever can write to the Redis must not be able to run code in
the server. Each entry expires after CACHE_TTL_SECONDS; Redis' own maxmemory policy bounds the
size.

A read waits on Redis at most REDIS_TIMEOUT_MS (no retries). A write never waits for Redis: it
is sent on a connection of its own and its reply read by a later write, when it has arrived
(pipelining without waiting), ~17 µs a write. Measured on the text model's misses: a background
writer thread cost each ~120 µs more than no write at all (its Python competes for the GIL with
the next request), and a synchronous SET waits ~40 µs on loopback.

Redis down or slow: the request is answered without the cache, Redis is tried again every
RETRY_SHARED_SECONDS, and a warning is logged once a minute (mlapi.redis_outage).
"""
from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from typing import Any

import orjson

from mlapi import redis_outage
from mlapi.errors import ConfigurationError, cut
from mlapi.redis_outage import RedisOutage
from mlapi.serving.cache import MISSING
from mlapi.serving.model import InstanceAnswer

log = logging.getLogger(__name__)

KEY_PREFIX = "mlapi:prediction:v2:"  # the format of the values: another one is never read as this one
RETRY_SHARED_SECONDS = redis_outage.RETRY_SECONDS


class RedisPredictionCache:
    enabled = True

    def __init__(self, url: str, ttl_seconds: int, timeout_ms: int):
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigurationError("REDIS_URL needs the Python module redis: install mlapi[redis]") from None
        timeout = self.timeout_seconds = timeout_ms / 1000
        # No retries: a request waits on Redis at most one timeout (the client's default
        # retries three times, with backoff). The pool reconnects after fork() by itself.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        self.errors = (redis.RedisError, OSError)
        self.ttl_seconds = ttl_seconds
        self.outage = RedisOutage(log, "predictions are served without the cache", "the prediction cache is shared again")
        self.timeout_error = redis.TimeoutError
        self.writes = self.client.connection_pool.make_connection()  # remade in each worker
        self._writer_pid = 0
        self._unread = 0
        self._answered_at = 0.0  # when a reply last arrived, or the first unanswered write went
        self._lock = threading.Lock()
        # Each worker's write connection is made as the worker is forked (uWSGI calls CPython's
        # fork hooks: py-call-uwsgi-fork-hooks), not by its first request's write.
        connected = weakref.WeakMethod(self._connect_forked_writer)
        os.register_at_fork(after_in_child=lambda: connected() and connected()())

    def _connect_forked_writer(self) -> None:
        """In a freshly forked process (one thread: a lock another thread of the parent held
        would never be released here): its write connection, if Redis answers in the timeout."""
        self._lock = threading.Lock()
        try:
            self._connection().connect()
        except self.errors as exc:
            self.outage.failed(exc, RETRY_SHARED_SECONDS)
        except Exception:  # never fail a fork for it: the first write connects instead
            log.debug("prediction cache: no write connection at fork", exc_info=True)

    def get(self, key: str) -> Any:
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[Any]:
        """Each key's value or `MISSING` (all of them when Redis does not answer): one MGET."""
        if not self.outage.asking():
            return [MISSING] * len(keys)
        try:
            raws = self.client.mget([KEY_PREFIX + key for key in keys])
        except self.errors as exc:
            self.outage.failed(exc, RETRY_SHARED_SECONDS)
            return [MISSING] * len(keys)
        self.outage.answered()
        return [MISSING if raw is None else _decoded(raw) for raw in raws]

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        """Send the writes and return at once: their replies are read by a later write, or never."""
        if not self.outage.asking() or not items:
            return
        ttl = str(self.ttl_seconds).encode()
        commands = b"".join([_set_command((KEY_PREFIX + key).encode(), encode_value(value), ttl)
                             for key, value in items])
        with self._lock:
            writes = self._connection()
            try:
                if writes._sock is not None:  # connected: a closed one reads as ready (EOF)
                    self._read_arrived(writes, until_empty=True)
            except self.errors:
                # Dropped while idle (Redis restarted, a network cut healed): a fresh
                # connection is made by the send below, which alone says whether Redis is down.
                writes.disconnect()
                self._unread = 0
            try:
                if not self._unread:
                    self._answered_at = time.monotonic()
                writes.send_packed_command([commands], check_health=False)
                self._unread += len(items)
                self._read_arrived(writes)
                # Replies owed and none for longer than a read may wait: Redis does not answer.
                if self._unread and time.monotonic() - self._answered_at > self.timeout_seconds:
                    raise self.timeout_error(f"{self._unread} writes unanswered")
            except self.errors as exc:
                writes.disconnect()
                self._unread = 0
                self.outage.failed(exc, RETRY_SHARED_SECONDS)

    def _read_arrived(self, writes, until_empty: bool = False) -> None:
        """The replies that have arrived, without waiting for any: reading them frees Redis'
        output buffer; `until_empty` also reads past the last expected one, which finds a
        connection Redis (or the network) has closed.

        Read as bytes, not by redis-py's parser (~10 µs a reply in Python): a SET's reply is one
        line, `+OK` or an error (`-OOM ...`), so counting newlines counts replies."""
        sock = writes._sock
        while (self._unread or until_empty) and _arrived(sock):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("Redis closed the connection")
            if b"-" in data:  # never in "+OK\r\n": an error reply
                raise self.timeout_error(f"Redis refused a write: {cut(data.decode(errors='replace'), 200)}")
            self._unread = max(0, self._unread - data.count(b"\n"))
            self._answered_at = time.monotonic()

    def _connection(self):
        # Its own connection, made in the process that writes: replies must never reach a
        # reader (GET) on a pooled connection, and a connection must not cross the fork().
        if self._writer_pid != os.getpid():
            self.writes = self.client.connection_pool.make_connection()
            self._writer_pid = os.getpid()
            self._unread = 0
        return self.writes


def _set_command(key: bytes, value: bytes, ttl: bytes) -> bytes:
    """SET key value EX ttl in Redis' protocol (RESP): what redis-py's packer writes, without
    its Python per argument."""
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (
        len(key), key, len(value), value, len(ttl), ttl)


def _arrived(sock) -> bool:
    """Whether bytes wait on the socket (a TLS socket may hold decrypted ones select cannot see)."""
    pending = getattr(sock, "pending", None)
    return bool((pending is not None and pending()) or select.select([sock], [], [], 0)[0])


def _decoded(raw: bytes) -> Any:
    try:
        return decode_value(raw)
    except (ValueError, KeyError, TypeError) as exc:
        # Not an entry this code wrote (another program's key, a hand edit, a format from a
        # later release during a rolling deploy): a miss, never a 500.
        log.warning("prediction cache: an entry could not be read (%s): recomputed",
                    cut(f"{exc.__class__.__name__}: {exc}", 200))
        return MISSING


def encode_value(value: Any) -> bytes:
    """One instance's answer as JSON: an InstanceAnswer (label, probabilities or None), or a
    feature row (a list)."""
    if isinstance(value, InstanceAnswer):
        return orjson.dumps({"label": value.label, "probabilities": value.probabilities},
                            option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({"features": value}, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_value(raw: bytes) -> Any:
    value = orjson.loads(raw)
    if "features" in value:
        features = value["features"]
        if not isinstance(features, list):
            raise TypeError("features is not a list")
        return features
    probabilities = value["probabilities"]
    if probabilities is not None and not isinstance(probabilities, list):
        raise TypeError("probabilities is not a list")
    return InstanceAnswer(value["label"], probabilities)
