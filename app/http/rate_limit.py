"""Rate limits (RATE_LIMIT, e.g. "100/minute;2000/hour") per caller, counted with the limits
library (Flask-Limiter's engine), checked by the request pipeline before the fast path or Flask
see the request.

Fixed windows (what limits' FixedWindowRateLimiter does, Flask-Limiter's default, on limits'
own storage): one atomic increment-with-expiry per limit, so one Redis round trip per limit;
the price is that a caller may spend one window's amount at its end and the next at the start
of the next. Counts live in REDIS_URL's Redis when set, shared by every process and instance;
else each worker process counts on its own (with W workers a caller may make W times the limit).

Redis down or slower than REDIS_TIMEOUT_MS: the request is served, counted in the process's own
memory, and Redis is tried again every RETRY_SHARED_SECONDS; a warning is logged once a minute
(mlapi.redis_outage). Failing closed would turn a Redis outage (a Memorystore basic tier has no replica)
into an outage of every model; failing wide open would drop every limit at once; counting per
process keeps a limit of W times the amount per instance, and no request waits on Redis more
than once per interval. Refused requests get a JSON 429 with Retry-After and the RateLimit
fields of draft-ietf-httpapi-ratelimit-headers-06 (RateLimit-Limit, -Remaining, -Reset,
-Policy); successful answers carry none, which would cost a storage round trip per limit each.
"""
from __future__ import annotations

import logging
import math
import time

from mlapi import redis_outage
from mlapi.errors import ConfigurationError, RateLimited
from mlapi.redis_outage import RedisOutage

log = logging.getLogger(__name__)

# Probes, scrapes and Pub/Sub's pushes (paced by the subscription, authenticated by their token).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/startupz", "/metrics", "/pubsub/push"})
RETRY_SHARED_SECONDS = redis_outage.RETRY_SECONDS


class RateLimits:
    def __init__(self, spec: str, redis_url: str | None = None, timeout_ms: int = 100):
        # Imported here: a server without RATE_LIMIT does not pay limits' ~60 ms import at start.
        from limits import parse_many
        from limits.errors import StorageError
        from limits.storage import storage_from_string

        self.storage_error = StorageError
        items = parse_many(spec)
        # (limit, its key after the caller's, its window in seconds), built once: limits'
        # key_for, run per call by its strategies, was a third of a check's cost.
        self.windows = [(item, f"/{item.amount}/{item.multiples}/{item.GRANULARITY.name}", item.get_expiry())
                        for item in items]
        self.policy = ", ".join(f"{item.amount};w={item.get_expiry()}" for item in items)
        self.local = storage_from_string("memory://")
        self.shared = _redis_storage(redis_url, timeout_ms / 1000) if redis_url else None
        self.outage = RedisOutage(log, "each worker counts rate limits on its own", "rate limits are shared again")

    def check(self, caller: str) -> None:
        """Count one request of `caller`; RateLimited (429) when a limit is used up."""
        if self.shared is None:
            return self._hit(self.local, caller)
        if self.outage.asking():
            try:
                self._hit(self.shared, caller)
                self.outage.answered()
                return
            except self.storage_error as exc:
                self.outage.failed(exc.storage_error, RETRY_SHARED_SECONDS)
        self._hit(self.local, caller)

    def _hit(self, storage, caller: str) -> None:
        # FixedWindowRateLimiter.hit: the window's count after this request, against its amount.
        for item, suffix, seconds in self.windows:
            if storage.incr(caller + suffix, seconds) > item.amount:
                raise self._refusal(storage, caller, item)

    def _refusal(self, storage, caller: str, refused) -> RateLimited:
        now = time.time()
        # The caller may call again once every used-up window has ended.
        wait = max(min(seconds, max(1, math.ceil(storage.get_expiry(caller + suffix) - now)))
                   for item, suffix, seconds in self.windows
                   if item is refused or storage.get(caller + suffix) >= item.amount)
        headers = (("Retry-After", str(wait)), ("RateLimit-Limit", str(refused.amount)),
                   ("RateLimit-Remaining", "0"), ("RateLimit-Reset", str(wait)), ("RateLimit-Policy", self.policy))
        return RateLimited(f"rate limit exceeded: {refused} per caller (RATE_LIMIT); retry in {wait} s",
                           headers, limit=str(refused), retry_after=wait)


def _redis_storage(url: str, timeout: float):
    from limits.storage import storage_from_string

    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigurationError("REDIS_URL needs the Python module redis: install mlapi[redis]") from None
    # No retries: one failed call already sends the request to the local counts, so a request
    # waits on Redis at most one timeout (the client's default retries three times, with backoff).
    return storage_from_string(url, wrap_exceptions=True, key_prefix="mlapi:ratelimit", socket_timeout=timeout,
                               socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def build_rate_limits(settings) -> RateLimits | None:
    if not settings.rate_limit:
        return None
    return RateLimits(settings.rate_limit, settings.redis_url, settings.redis_timeout_ms)
