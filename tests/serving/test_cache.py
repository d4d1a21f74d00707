"""The in-process prediction cache: bounded, entries expire after CACHE_TTL_SECONDS, and
build_prediction_cache picks it unless REDIS_URL is set."""
from mlapi.config import Settings
from mlapi.serving import cache as cache_module
from mlapi.serving.cache import MISSING, PredictionCache, build_prediction_cache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_entries_expire_after_the_ttl(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(cache_module.time, "monotonic", clock)
    cache = PredictionCache(10, ttl_seconds=60)
    cache.put("a", [1.0])
    clock.now += 59.9
    assert cache.get("a") == [1.0]
    clock.now += 0.1
    assert cache.get("a") is MISSING
    cache.put("a", [2.0])  # written again: a fresh lifetime
    clock.now += 59
    assert cache.get("a") == [2.0]


def test_the_least_recently_used_entry_goes_first():
    cache = PredictionCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the more recent
    cache.put("c", 3)
    assert [cache.get(key) for key in "abc"] == [1, MISSING, 3]


def test_size_zero_turns_it_off():
    cache = PredictionCache(0)
    cache.put("a", 1)
    assert not cache.enabled and cache.get("a") is MISSING


def test_in_process_unless_redis_url_is_set():
    cache = build_prediction_cache(Settings.from_env({"PREDICTION_CACHE_SIZE": "5", "CACHE_TTL_SECONDS": "7"}))
    assert isinstance(cache, PredictionCache)
    assert (cache.max_entries, cache.ttl_seconds) == (5, 7)
    off = build_prediction_cache(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0",
                                                    "PREDICTION_CACHE_SIZE": "0"}))
    assert isinstance(off, PredictionCache) and not off.enabled
