"""The prediction cache in Redis (REDIS_URL): one set of entries for every process and instance.

Same interface as the in-process PredictionCache (`enabled`, `get_many`, `put_many`): a request's
instances are looked up with one MGET, one round trip whatever their number. Values are stored as
JSON (orjson), never pickles: whoever can write to the Redis must not be able to run code in
the server. Each entry expires after CACHE_TTL_SECONDS; Redis' own maxmemory policy bounds the
size.

A read waits on Redis at most REDIS_TIMEOUT_MS (no retries). A write never waits for Redis: it
is sent on a connection of its own and its reply read by a later write (mlapi.redis_writes),
~17 µs a write.

Redis down or slow: the request is answered without the cache, Redis is tried again every
RETRY_SHARED_SECONDS, and a warning is logged once a minute (mlapi.redis_outage).
"""
from __future__ import annotations

import logging
from typing import Any

import orjson

from mlapi import redis_outage
from mlapi.errors import ConfigurationError, cut
from mlapi.redis_outage import RedisOutage
from mlapi.redis_writes import UnwaitedWrites
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
        # No retries: a request waits on Redis at most one timeout (some redis-py versions retry
        # by default: said, not assumed). The pool reconnects after fork() by itself.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        self.errors = (redis.RedisError, OSError)
        self.ttl_seconds = ttl_seconds
        self.outage = RedisOutage(log, "predictions are served without the cache", "the prediction cache is shared again")
        # Writes go unwaited (redis_writes), tried again with the reads, every RETRY_SHARED_SECONDS.
        self.writes = UnwaitedWrites(self.client, self.outage, RETRY_SHARED_SECONDS)

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
        self.writes.send(commands, replies=len(items))


def _set_command(key: bytes, value: bytes, ttl: bytes) -> bytes:
    """SET key value EX ttl in Redis' protocol (RESP): what redis-py's packer writes, without
    its Python per argument."""
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (
        len(key), key, len(value), value, len(ttl), ttl)


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
