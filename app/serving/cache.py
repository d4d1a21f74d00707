"""In-process prediction cache: a bounded, thread-safe LRU keyed by model, operation and input.

Embedded default (no service needed). Predictions are deterministic for a loaded model, so
an entry is valid for as long as that model version is served; the key includes the model's
sha256, so a different artifact under the same name and version never reads old entries.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import orjson

_MISSING = object()


def cache_key(*parts: Any) -> str:
    """A stable digest of JSON-able parts (numpy arrays included)."""
    raw = orjson.dumps(parts, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


class PredictionCache:
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        """The cached value, or `MISSING`."""
        if self.max_entries == 0:
            return _MISSING
        with self._lock:
            value = self._entries.get(key, _MISSING)
            if value is not _MISSING:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: Any) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


MISSING = _MISSING
