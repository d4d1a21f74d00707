"""Rate limits (RATE_LIMIT, e.g. "100/minute;2000/hour") per caller, checked by the request
pipeline before the fast path or Flask see the request. RATE_LIMIT's grammar is the limits
library's (Flask-Limiter's engine: parse_many); the counting is done here.

Fixed windows (what limits' FixedWindowRateLimiter does, Flask-Limiter's default, with limits'
Redis keys): one increment per limit, in order, until one is over its amount; a window starts
at its first request and lasts its length. The price is that a caller may spend one window's
amount at its end and the next at the start of the next.

Without REDIS_URL each worker process counts on its own (with W workers a caller may make W
times the limit), in a dict of window counts, each dropped once its window has ended: when
met, and a few per check in the order they end, so a flood of distinct callers cannot grow it
past what their windows hold (and never past MAX_LOCAL_COUNTERS: past that the oldest window is
forgotten early, its caller counted afresh). limits' MemoryStorage is not used: it runs its
expiry on a threading.Timer(0.01) started again from `incr` once the last one has fired, ~100
thread starts a second in a busy worker, each waiting for its thread to run; measured
(docs/performance.md, fleet features) it cost 23 % of M1's req/s at 16 connections.

With REDIS_URL every process and instance shares one count (app/http/rate_limit_shared.py),
and a check does not wait for Redis unless the caller is near a limit.

Redis down or slower than REDIS_TIMEOUT_MS: the request is served, counted in the process's own
memory, and Redis is tried again every RETRY_SHARED_SECONDS; a warning is logged once a minute
(mlapi.redis_outage); the hits of a flush Redis did not take are not counted again. Failing
closed would turn a Redis outage (a Memorystore basic tier has no replica) into an outage of
every model; failing wide open would drop every limit at once; counting per process keeps a
limit of W times the amount per instance, and no request waits on Redis more than once per
interval. Refused requests get a JSON 429 with Retry-After and the RateLimit fields of
draft-ietf-httpapi-ratelimit-headers-06 (RateLimit-Limit, -Remaining, -Reset, -Policy);
successful answers carry none, which would cost a storage round trip per limit each.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque

from mlapi.errors import RateLimited
from mlapi.http.rate_limit_shared import SharedCounts
from mlapi.redis_outage import RETRY_SECONDS as RETRY_SHARED_SECONDS

log = logging.getLogger(__name__)

# Probes, scrapes and Pub/Sub's pushes (paced by the subscription, authenticated by their token).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/startupz", "/metrics", "/pubsub/push"})
MAX_LOCAL_COUNTERS = 65_536  # per process: ~250 bytes each
SWEEP_PER_CHECK = 4  # ended windows dropped per check, oldest first (a check starts at most one per limit)


class RateLimits:
    def __init__(self, spec: str, redis_url: str | None = None, timeout_ms: int = 100):
        # Imported here: a server without RATE_LIMIT does not pay limits' ~60 ms import at start.
        from limits import parse_many

        items = parse_many(spec)
        # (limit, its key after the caller's, its window in seconds), built once.
        self.windows = [(item, f"/{item.amount}/{item.multiples}/{item.GRANULARITY.name}", item.get_expiry())
                        for item in items]
        self.policy = ", ".join(f"{item.amount};w={item.get_expiry()}" for item in items)
        self.local = LocalCounts(self.windows)
        self.shared = SharedCounts(redis_url, timeout_ms / 1000, self.windows) if redis_url else None

    def check(self, caller: str) -> None:
        """Count one request of `caller`; RateLimited (429) when a limit is used up."""
        if self.shared is not None:
            answer = self.shared.hit(caller)
            if answer is None:  # counted ahead of Redis, far from every limit
                return
            if answer is not SharedCounts.DOWN:
                counts, seconds_left = answer
                return self._judge(counts, seconds_left)
        counts, seconds_left = self.local.hit(caller)
        self._judge(counts, seconds_left)

    def _judge(self, counts: list[int], seconds_left: list[float]) -> None:
        for (item, _, _), count in zip(self.windows, counts):
            if count > item.amount:
                raise self._refusal(item, counts, seconds_left)

    def _refusal(self, refused, counts: list[int], seconds_left: list[float]) -> RateLimited:
        # The caller may call again once every used-up window has ended.
        wait = max(min(seconds, max(1, math.ceil(left)))
                   for (item, _, seconds), count, left in zip(self.windows, counts, seconds_left)
                   if item is refused or count >= item.amount)
        headers = (("Retry-After", str(wait)), ("RateLimit-Limit", str(refused.amount)),
                   ("RateLimit-Remaining", "0"), ("RateLimit-Reset", str(wait)), ("RateLimit-Policy", self.policy))
        return RateLimited(f"rate limit exceeded: {refused} per caller (RATE_LIMIT); retry in {wait} s",
                           headers, limit=str(refused), retry_after=wait)


class LocalCounts:
    """One process's fixed windows: counter key → [count, end (time.monotonic())], and the
    counters in the order their windows end (one deque per window length: started in time
    order, they end in that order), so ended ones are dropped oldest first without a scan."""

    def __init__(self, windows):
        self.windows = windows
        self.counters: dict[str, list] = {}
        self.ending = [deque() for _ in windows]
        self.lock = threading.Lock()

    def hit(self, caller: str) -> tuple[list[int], list[float]]:
        """The script's steps: a hit on each window in order until one is over, the rest read."""
        now = time.monotonic()
        counts, seconds_left = [], []
        over = False
        with self.lock:
            self._sweep(now)
            for (item, suffix, seconds), ending in zip(self.windows, self.ending):
                key = caller + suffix
                counter = self.counters.get(key)
                if counter is None or counter[1] <= now:
                    if over:
                        counter = (0, now)
                    else:
                        counter = self.counters[key] = [0, now + seconds]
                        ending.append((counter, key))
                if not over:
                    counter[0] += 1
                    over = counter[0] > item.amount
                counts.append(counter[0])
                seconds_left.append(counter[1] - now)
        return counts, seconds_left

    def _sweep(self, now: float) -> None:
        for ending in self.ending:
            for _ in range(SWEEP_PER_CHECK):
                if not ending or (ending[0][0][1] > now and len(self.counters) < MAX_LOCAL_COUNTERS):
                    break
                counter, key = ending.popleft()
                if self.counters.get(key) is counter:
                    del self.counters[key]


def build_rate_limits(settings) -> RateLimits | None:
    if not settings.rate_limit:
        return None
    return RateLimits(settings.rate_limit, settings.redis_url, settings.redis_timeout_ms)
