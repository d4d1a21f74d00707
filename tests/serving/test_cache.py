"""The in-process prediction cache: bounded, entries expire after CACHE_TTL_SECONDS, many keys
looked up in one pass, instance keys that ignore key order and int / float; build_prediction_cache
picks it unless REDIS_URL is set; CACHE_ROUTES."""
import pytest

from mlapi.config import CACHE_ROUTE_KINDS, Settings
from mlapi.errors import ConfigurationError
from mlapi.serving import cache as cache_module
from mlapi.serving.cache import MISSING, PredictionCache, build_prediction_cache, instance_keys


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


def test_many_keys_in_one_pass_in_their_order():
    cache = PredictionCache(10)
    cache.put_many([("b", 2), ("d", 4)])
    assert cache.get_many(["a", "b", "c", "d"]) == [MISSING, 2, MISSING, 4]
    cache.put_many([(key, ord(key)) for key in "efghijklmn"])  # past 10 entries: b and d go first
    assert cache.get_many(["b", "d", "n"]) == [MISSING, MISSING, ord("n")]


def test_key_order_and_int_or_float_do_not_split_a_numeric_instance():
    numeric = lambda instances: instance_keys("sha:predict:True", instances, numbers_as_floats=True)  # noqa: E731
    assert numeric([{"a": 1, "b": 2.5}]) == numeric([{"b": 2.5, "a": 1.0}])
    assert numeric([[1, 2, 3]]) == numeric([[1.0, 2.0, 3.0]])
    assert numeric([[1, 2, 3]]) != numeric([[1, 2, 4]])
    # rows of numbers are keyed by the float matrix the model is given: what it cannot tell apart
    assert numeric([[True, 0]]) == numeric([[1.0, 0.0]])
    assert numeric([[2 ** 60 + 1]]) == numeric([[float(2 ** 60)]])
    assert numeric([[None, 1]]) == numeric([[float("nan"), 1]])
    # objects: by their JSON, ints within float64's exact range as floats
    assert numeric([{"a": True}]) != numeric([{"a": 1.0}])
    assert numeric([{"a": 2 ** 60 + 1}]) != numeric([{"a": float(2 ** 60)}])
    # a model with string columns may read 1 and 1.0 as two categories
    assert instance_keys("k", [["1", 1]], False) != instance_keys("k", [["1", 1.0]], False)
    # what is asked, and the artifact, are part of the key
    assert instance_keys("sha:predict:True", [[1]], True) != instance_keys("sha:predict:False", [[1]], True)
    assert instance_keys("sha1:predict:True", [[1]], True) != instance_keys("sha2:predict:True", [[1]], True)
    # NaN, infinity and null are three inputs to a model that keeps its values as sent
    as_sent = lambda instances: instance_keys("k", instances, False)  # noqa: E731
    assert len(set(as_sent([[float("nan")]]) + as_sent([[float("inf")]]) + as_sent([[None]]))) == 3
    assert len(set(numeric([{"a": float("nan")}]) + numeric([{"a": float("inf")}]) + numeric([{"a": None}]))) == 3
    # a row the model cannot take (ragged, a string) is keyed as sent
    assert numeric([[1, 2], [3]]) == numeric([[1, 2], [3]]) and numeric([[1, "x"]]) != numeric([[1, "y"]])


@pytest.mark.parametrize("value", ["predict,text", " all ", "none", "by_id"])
def test_cache_routes_reads_names_all_and_none(value):
    routes = Settings.from_env({"CACHE_ROUTES": value}).cache_routes
    expected = {"predict,text": {"predict", "text"}, " all ": set(CACHE_ROUTE_KINDS), "none": set(),
                "by_id": {"by_id"}}[value]
    assert routes == expected
    assert Settings.from_env({}).cache_routes == {"text"}


@pytest.mark.parametrize("value", ["predict,nope", ",", "all,predict"])
def test_a_bad_cache_routes_is_one_line_naming_it(value):
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"CACHE_ROUTES": value})
    assert str(raised.value).startswith(f"CACHE_ROUTES={value!r}") and "\n" not in str(raised.value)


def test_a_model_identity_names_the_scikit_learn_and_the_code_it_runs(monkeypatch):
    """The same artifact under another scikit-learn, or with an output on another compute path,
    must not read the entries of the first (a Redis cache outlives a revision)."""
    import sklearn
    from types import SimpleNamespace

    from mlapi.serving.cache import model_identity

    def served(path):
        return SimpleNamespace(metadata={"sha256": "ab" * 32}, name="m", version="1", compute_path=path)

    linear, plain = served({"predict_proba": "linear"}), served({"predict_proba": "scikit-learn"})
    assert model_identity(linear).startswith("ab" * 32)
    assert model_identity(linear) == model_identity(served({"predict_proba": "linear"}))
    assert model_identity(linear) != model_identity(plain)
    monkeypatch.setattr(sklearn, "__version__", "0.0-other")
    assert model_identity(served({"predict_proba": "linear"})) != model_identity(linear)
