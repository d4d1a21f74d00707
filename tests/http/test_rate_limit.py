"""Rate limits (RATE_LIMIT) per caller, in the request pipeline: the fast path and Flask alike;
a JSON 429 with Retry-After and draft-06's RateLimit-* fields; health, readiness and metrics
exempt; a forged X-Forwarded-For does not dodge it; with API keys a key is one caller."""
import time

import pytest

from conftest import as_plain, models_env
from mlapi.errors import ConfigurationError, RateLimited

KEY, OTHER = "k3y-for-the-tests-0123456789", "another.key~for+tests/0123456789"


@pytest.fixture
def rows(trained):
    return as_plain(trained["cancer"][2])


@pytest.fixture
def limited(make_app, trained):
    def build(**env):
        return make_app(MODELS=models_env(trained, "cancer"), RATE_LIMIT="3/minute;5/hour", **env).test_client()
    return build


def test_past_the_limit_a_json_429_says_when_to_come_back(limited, rows):
    client = limited()
    # The fast path, Flask (a route it answers, and one it refuses): all counted alike.
    statuses = [client.post("/predict", json={"instances": rows}).status_code,
                client.get("/models").status_code,
                client.post("/predict", data="x", content_type="text/plain").status_code]
    assert statuses == [200, 200, 415]
    for refused in (client.post("/predict", json={"instances": rows}), client.get("/models")):
        assert refused.status_code == 429 and refused.is_json
        error = refused.json["error"]
        assert error["status"] == 429 and error["limit"] == "3 per 1 minute"
        assert "rate limit exceeded: 3 per 1 minute per caller (RATE_LIMIT)" in error["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60 and error["retry_after"] == int(refused.headers["Retry-After"])
        assert refused.headers["RateLimit-Limit"] == "3"
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
        assert refused.headers["RateLimit-Policy"] == "3;w=60, 5;w=3600"
        assert refused.headers["Connection"] == "close"


def test_health_readiness_and_metrics_are_exempt(limited):
    client = limited()
    for _ in range(5):
        for path in ("/healthz", "/readyz", "/startupz", "/metrics"):
            assert client.get(path).status_code == 200, path
    assert client.get("/models").status_code == 200  # none of those counted


def test_each_caller_has_its_own_limit(limited, rows):
    client = limited()
    for _ in range(3):
        client.get("/models", environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert client.get("/models", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert client.get("/models", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


@pytest.mark.parametrize("hops, chain", [(0, "{forged}"), (1, "{forged}, 203.0.113.7"),
                                         (2, "{forged}, 203.0.113.7, 10.1.1.1")])
def test_a_forged_x_forwarded_for_does_not_dodge_the_limit(limited, hops, chain):
    client = limited(TRUSTED_PROXY_HOPS=hops)
    statuses = [client.get("/models", headers={"X-Forwarded-For": chain.format(forged=f"198.51.100.{n}")}).status_code
                for n in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


def test_with_keys_each_key_is_one_caller_from_any_address(limited):
    client = limited(API_KEYS=f"{KEY},{OTHER}", TRUSTED_PROXY_HOPS=1)
    statuses = [client.get("/models", headers={"X-API-Key": KEY, "X-Forwarded-For": f"198.51.100.{n}"}).status_code
                for n in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert client.get("/models", headers={"X-API-Key": OTHER}).status_code == 200
    # Without a valid key: a 401, counted against the address alone (below).
    assert client.get("/models").status_code == 401


class UnreadBody:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body of a refused request was read")

    readline = readlines = read


def test_requests_without_a_valid_key_are_limited_by_their_address_unread(limited, rows):
    client = limited(API_KEYS=KEY, TRUSTED_PROXY_HOPS=1)
    guesser = {"X-Forwarded-For": "198.51.100.7"}
    statuses = [client.post("/predict", headers={**guesser, "X-API-Key": f"guess-{n}"}, data=b"{}" * 10,
                            content_type="application/json", environ_overrides={"wsgi.input": UnreadBody()}).status_code
                for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]  # 3/minute, as any caller
    refused = client.get("/models", headers={"X-Forwarded-For": "1.1.1.1, 198.51.100.7"})  # a forged entry
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert client.get("/models", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 401  # another address
    # The key's own count is apart: a valid key from the guesser's address is served.
    assert client.post("/predict", json={"instances": rows}, headers={**guesser, "X-API-Key": KEY}).status_code == 200


@pytest.mark.parametrize("value", ["abc", "0/minute", "100/fortnight", "100"])
def test_a_rate_limit_that_is_no_rate_limit_stops_the_server(make_app, value):
    with pytest.raises(ConfigurationError, match="is not a rate limit"):
        make_app(RATE_LIMIT=value)


def test_a_check_starts_no_thread(monkeypatch):
    """limits' MemoryStorage started a threading.Timer from its counting every 10 ms."""
    import threading

    from mlapi.http.rate_limit import RateLimits

    limits = RateLimits("100000000/minute;100000000/hour")
    started = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: (started.append(thread), start(thread)))
    before = {thread.ident for thread in threading.enumerate()}
    for n in range(1000):
        limits.check(f"10.0.0.{n % 7}")
        if n % 100 == 0:
            time.sleep(0.011)  # past limits' 10 ms timer
    assert started == [] and {thread.ident for thread in threading.enumerate()} == before


def test_ended_windows_are_dropped_and_the_counters_are_bounded(monkeypatch):
    from mlapi.http import rate_limit

    limits = rate_limit.RateLimits("100/second")
    for n in range(50):
        limits.check(f"198.51.100.{n}")
    assert len(limits.local.counters) == 50
    time.sleep(1.05)
    for _ in range(13):  # each check drops a few ended windows, oldest first
        limits.check("203.0.113.1")
    assert list(limits.local.counters) == ["203.0.113.1/100/1/second"]

    monkeypatch.setattr(rate_limit, "MAX_LOCAL_COUNTERS", 100)
    flood = rate_limit.RateLimits("2/minute")
    for n in range(1000):  # distinct callers, none of whose windows has ended
        flood.check(f"2001:db8:{n:x}::/64")
    assert len(flood.local.counters) <= 100
    assert "2001:db8:3e7::/64/2/1/minute" in flood.local.counters  # the newest are kept
    flood.check("2001:db8:3e7::/64")
    with pytest.raises(RateLimited):
        flood.check("2001:db8:3e7::/64")
