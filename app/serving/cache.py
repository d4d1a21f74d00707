"""Prediction caches keyed by model, operation and input: the in-process LRU (the embedded
default, no service needed) and `build_prediction_cache`, which picks it or Redis once at start.

An entry is one instance's answer. Predictions are deterministic for a loaded model, so an entry
is valid for as long as that artifact is served: the key starts with the artifact's sha256
(`model_identity`), so a reloaded or replaced model never reads the entries of the one before,
and one artifact served under two names shares them. Entries still expire after
CACHE_TTL_SECONDS, in memory as in Redis, so a cache never outlives what its operators expect.

Both caches look many keys up at once (`get_many`: one pass under one lock, one Redis MGET)
and store many at once (`put_many`), so a request of many instances costs one round trip.
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
    return hashlib.blake2b(_json(parts), digest_size=20).hexdigest()


def _json(value: Any) -> bytes:
    raw = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)
    if b"null" in raw and _has_non_finite(value):
        raw = json.dumps(value, sort_keys=True, default=_plain, separators=(",", ":")).encode()
    return raw


def model_identity(model) -> str:
    """What changes whenever the served answers may: the artifact's sha256 (loading.py computes
    it from the bytes it loads), the scikit-learn that runs it and the code each output takes
    (compute_path: a shortcut or scikit-learn's own, whose last bits may differ). A Redis cache
    outlives a revision: a rollout onto another scikit-learn, or a shortcut turned off, must not
    read the other revision's answers. A model built in this process, never loaded from an
    artifact, has no sha256: its name, version and object id, which no other process shares.
    Worked out once per model object."""
    identity = getattr(model, "_cache_identity", None)
    if identity is None:
        import sklearn

        artifact = model.metadata.get("sha256") or f"{model.name}:{model.version}:{id(model)}"
        paths = sorted((getattr(model, "compute_path", None) or {}).items())
        identity = f"{artifact}:{cache_key('sklearn', sklearn.__version__, paths)[:16]}"
        model._cache_identity = identity
    return identity


# Integers that are exactly a float64: beyond them the model's float input merges neighbours anyway.
_EXACT_INT = 2 ** 53


def canonical_instance(instance: Any, numbers_as_floats: bool) -> Any:
    """One instance as the key knows it. Key order does not matter (the key is written with
    sorted keys) and 1.0, 1.00 and 1e0 already decode alike; `numbers_as_floats` (a model whose
    every column is numeric, which sees 1 and 1.0 as the same float) also makes int 1 the float
    1.0. A model with string columns keeps them apart: it may read 1 and 1.0 as two categories."""
    if not numbers_as_floats:
        return instance
    kind = type(instance)
    if kind is list:
        return [float(v) if type(v) is int and -_EXACT_INT <= v <= _EXACT_INT else v for v in instance]
    if kind is dict:
        return {k: float(v) if type(v) is int and -_EXACT_INT <= v <= _EXACT_INT else v for k, v in instance.items()}
    return instance


def instance_keys(identity: str, instances: list, numbers_as_floats: bool) -> list[str]:
    """One key per instance: `identity` (the artifact and what is asked) and the instance.

    `numbers_as_floats` (a model whose every column is a number): rows that are lists of numbers
    are keyed by the float64 matrix numpy makes of them, the very matrix the model is given
    (typed_rows.as_floats: 1 and 1.0 alike, null as NaN), at numpy's speed; anything else by its
    JSON (canonical_instance). The two are told apart, so they can only split entries."""
    base = hashlib.blake2b(identity.encode() + b"\0", digest_size=20)
    matrix = _float_rows(instances) if numbers_as_floats else None
    keys = []
    if matrix is not None:
        for row in matrix:
            digest = base.copy()
            digest.update(b"f" + row.tobytes())
            keys.append(digest.hexdigest())
        return keys
    for instance in instances:
        digest = base.copy()
        digest.update(b"j" + _json(canonical_instance(instance, numbers_as_floats)))
        keys.append(digest.hexdigest())
    return keys


def _float_rows(instances: list) -> np.ndarray | None:
    if type(instances[0]) is not list:
        return None
    try:
        matrix = np.asarray(instances, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    return matrix if matrix.ndim == 2 else None


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
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[Any]:
        """Each key's value or `MISSING`, in one pass under the lock."""
        now = time.monotonic()
        entries = self._entries
        found = []
        with self._lock:
            for key in keys:
                entry = entries.get(key)
                if entry is None:
                    found.append(_MISSING)
                elif entry[0] <= now:
                    del entries[key]
                    found.append(_MISSING)
                else:
                    entries.move_to_end(key)
                    found.append(entry[1])
        return found

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        if self.max_entries == 0:
            return
        expires_at = time.monotonic() + self.ttl_seconds
        entries = self._entries
        with self._lock:
            for key, value in items:
                entries[key] = (expires_at, value)
                entries.move_to_end(key)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)


MISSING = _MISSING


def build_prediction_cache(settings):
    """Redis when REDIS_URL is set (every process and instance shares the entries), else the
    in-process LRU; PREDICTION_CACHE_SIZE=0 turns either off."""
    if settings.redis_url and settings.prediction_cache_size:
        from mlapi.serving.cache_redis import RedisPredictionCache

        return RedisPredictionCache(settings.redis_url, settings.cache_ttl_seconds, settings.redis_timeout_ms)
    return PredictionCache(settings.prediction_cache_size, settings.cache_ttl_seconds)
