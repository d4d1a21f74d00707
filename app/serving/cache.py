"""Prediction caches keyed by model, operation and input: the in-process LRU (the embedded
default, no service needed) and `build_prediction_cache`, which picks it or Redis once at start.

Predictions are deterministic for a loaded model, so an entry is valid for as long as that model
version is served; the key includes the model's sha256, so a different artifact under the same
name and version never reads old entries. Entries still expire after CACHE_TTL_SECONDS, in
memory as in Redis, so a cache never outlives what its operators expect of it.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson

_MISSING = object()


def cache_key(*parts: Any) -> str:
    """A stable digest of JSON-able parts (numpy arrays included).

    orjson writes NaN, Infinity and -Infinity as null, so parts holding one would share a key
    with the same parts holding null (or another of the three) and read its answer. Only an
    encoding with a null can hold one; such parts are walked, and when they do hold a
    non-finite float they are keyed by the standard library's encoding, which names all four
    apart (and is never equal to an orjson encoding, which has no NaN)."""
    raw = orjson.dumps(parts, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)
    if b"null" in raw and _has_non_finite(parts):
        raw = json.dumps(parts, sort_keys=True, default=_plain, separators=(",", ":")).encode()
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            return not bool(np.isfinite(value).all())
        return value.dtype == object and any(_has_non_finite(item) for item in value.ravel())
    if isinstance(value, np.floating):
        return not bool(np.isfinite(value))
    return False


def _plain(value: Any) -> Any:
    """numpy arrays and scalars for json.dumps."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


class PredictionCache:
    """One worker process's entries: at most `max_entries`, each for `ttl_seconds`."""

    def __init__(self, max_entries: int, ttl_seconds: float = 3600):
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()  # key → (expires at, value)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def get(self, key: str) -> Any:
        """The cached value, or `MISSING`."""
        if self.max_entries == 0:
            return _MISSING
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return _MISSING
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return _MISSING
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: Any) -> None:
        if self.max_entries == 0:
            return
        expires_at = time.monotonic() + self.ttl_seconds
        with self._lock:
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


MISSING = _MISSING


def build_prediction_cache(settings):
    """Redis when REDIS_URL is set (every process and instance shares the entries), else the
    in-process LRU; PREDICTION_CACHE_SIZE=0 turns either off."""
    if settings.redis_url and settings.prediction_cache_size:
        from mlapi.serving.cache_redis import RedisPredictionCache

        return RedisPredictionCache(settings.redis_url, settings.cache_ttl_seconds, settings.redis_timeout_ms)
    return PredictionCache(settings.prediction_cache_size, settings.cache_ttl_seconds)
