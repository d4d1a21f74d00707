"""Rate limits (RATE_LIMIT, e.g. "100/minute;2000/hour") per caller, counted with the limits
library (Flask-Limiter's engine), checked by the request pipeline before the fast path or Flask
see the request.

Fixed windows (what limits' FixedWindowRateLimiter does, Flask-Limiter's default, on limits'
own storage and keys): one atomic increment-with-expiry per limit, in order, until one is over
its amount; the price is that a caller may spend one window's amount at its end and the next at
the start of the next. In Redis one script does that for every window and answers each count
and time left (limits' storage runs its script once per window, and a refusal read each window
again): one round trip per check, refused or not. Counts live in REDIS_URL's Redis when set, shared by every process and instance;
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
from typing import Callable

from mlapi import redis_outage
from mlapi.errors import ConfigurationError, RateLimited
from mlapi.redis_outage import RedisOutage

log = logging.getLogger(__name__)

# Probes, scrapes and Pub/Sub's pushes (paced by the subscription, authenticated by their token).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/startupz", "/metrics", "/pubsub/push"})
RETRY_SHARED_SECONDS = redis_outage.RETRY_SECONDS


# limits' incr_expire script for every window at once: KEYS are the windows' counters, ARGV each
# window's seconds and amount in turn. Windows are hit in order until one is over its amount
# (the rest only read), and each count is answered with its seconds left.
HIT_WINDOWS = """
local answer, over = {}, false
for i, key in ipairs(KEYS) do
  local count
  if over then
    count = tonumber(redis.call("get", key) or 0)
  else
    count = redis.call("incrby", key, 1)
    if count == 1 then redis.call("expire", key, ARGV[2 * i - 1]) end
    over = count > tonumber(ARGV[2 * i])
  end
  answer[2 * i - 1] = count
  answer[2 * i] = redis.call("ttl", key)
end
return answer
"""


class RateLimits:
    def __init__(self, spec: str, redis_url: str | None = None, timeout_ms: int = 100):
        # Imported here: a server without RATE_LIMIT does not pay limits' ~60 ms import at start.
        from limits import parse_many
        from limits.storage import storage_from_string

        items = parse_many(spec)
        # (limit, its key after the caller's, its window in seconds), built once: limits'
        # key_for, run per call by its strategies, was a third of a check's cost.
        self.windows = [(item, f"/{item.amount}/{item.multiples}/{item.GRANULARITY.name}", item.get_expiry())
                        for item in items]
        self.policy = ", ".join(f"{item.amount};w={item.get_expiry()}" for item in items)
        self.local = storage_from_string("memory://")
        self.shared = _redis_storage(redis_url, timeout_ms / 1000) if redis_url else None
        if self.shared is not None:
            import redis

            self.redis_error = redis.RedisError
            self.hit_windows = self.shared.get_connection().register_script(HIT_WINDOWS)
            self.window_args = [value for item, _, seconds in self.windows for value in (seconds, item.amount)]
        self.outage = RedisOutage(log, "each worker counts rate limits on its own", "rate limits are shared again")

    def check(self, caller: str) -> None:
        """Count one request of `caller`; RateLimited (429) when a limit is used up."""
        if self.shared is not None and self.outage.asking():
            try:
                answer = self.hit_windows([self.shared.prefixed_key(caller + suffix) for _, suffix, _ in self.windows],
                                          self.window_args)
            except self.redis_error as exc:
                self.outage.failed(exc, RETRY_SHARED_SECONDS)
            else:
                self.outage.answered()
                return self._judge(answer[0::2], lambda: answer[1::2])
        counts = self._hit_local(caller)
        self._judge(counts, lambda: [self.local.get_expiry(caller + suffix) - time.time()
                                     for _, suffix, _ in self.windows])

    def _hit_local(self, caller: str) -> list[int]:
        # The script's steps on limits' memory storage (FixedWindowRateLimiter.hit per limit).
        counts: list[int] = []
        over = False
        for item, suffix, seconds in self.windows:
            count = self.local.get(caller + suffix) if over else self.local.incr(caller + suffix, seconds)
            over = over or count > item.amount
            counts.append(count)
        return counts

    def _judge(self, counts: list[int], seconds_left: Callable[[], list[float]]) -> None:
        for (item, _, _), count in zip(self.windows, counts):
            if count > item.amount:
                raise self._refusal(item, counts, seconds_left())

    def _refusal(self, refused, counts: list[int], seconds_left: list[float]) -> RateLimited:
        # The caller may call again once every used-up window has ended.
        wait = max(min(seconds, max(1, math.ceil(left)))
                   for (item, _, seconds), count, left in zip(self.windows, counts, seconds_left)
                   if item is refused or count >= item.amount)
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
