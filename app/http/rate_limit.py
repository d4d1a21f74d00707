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

With REDIS_URL every process and instance shares one count, and a check does not wait for
Redis unless the caller is near a limit. Each worker counts its hits locally, and a thread of
its own (started in each worker as it is forked) sends them every FLUSH_SECONDS in one script
call for every counter hit since (INCRBY, EXPIRE on the first) and reads back the shared
counts. A check is judged on the last shared count read (at most FRESH_SECONDS old) plus this
process's hits not yet in it, and counted ahead of Redis only while those hits stay within an
AHEAD_SHARE-th of what that count leaves of every window; otherwise (a first request, a count
not read lately, a caller near or at a limit, a small limit such as 5/minute) it waits for
Redis as before: one script round trip that adds its pending hits and this one to every
window in order until one is over, and answers each count and its time left, so refusals and
small limits are exact. Overshoot: P processes hitting one caller are together ahead of Redis
by at most P/AHEAD_SHARE of what the counts they last read left (each read ≤ FRESH_SECONDS
old): none while P ≤ AHEAD_SHARE read at about the same time; past that, bounded by that share
and the hits between reads. Why not the round trip on every request: through redis-py it cost
39 % of M1's req/s (worker CPU 250 → 608 µs a request); the thread's one script call per
FLUSH_SECONDS, whatever the number of requests, costs them a share of the GIL instead.

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
import os
import threading
import time
import weakref
from collections import deque

from mlapi import redis_outage
from mlapi.errors import ConfigurationError, RateLimited
from mlapi.redis_outage import RedisOutage

log = logging.getLogger(__name__)

# Probes, scrapes and Pub/Sub's pushes (paced by the subscription, authenticated by their token).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/startupz", "/metrics", "/pubsub/push"})
RETRY_SHARED_SECONDS = redis_outage.RETRY_SECONDS
MAX_LOCAL_COUNTERS = 65_536  # per process: ~250 bytes each
SWEEP_PER_CHECK = 4  # ended windows dropped per check, oldest first (a check starts at most one per limit)
FLUSH_SECONDS = 0.025  # how often a worker sends its hits to Redis and reads the shared counts
FRESH_SECONDS = 0.1  # a shared count older than this is not judged on: the check asks Redis
AHEAD_SHARE = 8  # a process counts ahead of Redis at most this share of what the shared count leaves

# limits' incr_expire for every window at once: KEYS are the counters, ARGV[1] "1" for a
# request's hit ("0": only add the hits already allowed), then each counter's window seconds,
# amount and hits already allowed. A hit goes to the windows in order until one is over its
# amount (the rest get only their allowed hits, or are only read); each count is answered
# with its seconds left.
HIT_WINDOWS = """
local answer, over = {}, ARGV[1] == "0"
for i, key in ipairs(KEYS) do
  local add = tonumber(ARGV[3 * i + 1])
  if not over then add = add + 1 end
  local count
  if add > 0 then
    count = redis.call("incrby", key, add)
    if count == add then redis.call("expire", key, ARGV[3 * i - 1]) end
  else
    count = tonumber(redis.call("get", key) or 0)
  end
  over = over or count > tonumber(ARGV[3 * i])
  answer[2 * i - 1] = count
  answer[2 * i] = redis.call("ttl", key)
end
return answer
"""


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


class SharedCounts:
    """The counts in Redis, with this process's hits sent behind the requests (see the module's
    docstring): `hit` answers None when counted ahead, DOWN when Redis does not answer, else
    the windows' shared counts and seconds left."""

    DOWN = object()

    def __init__(self, url: str, timeout: float, windows):
        storage = _redis_storage(url, timeout)
        import redis

        self.redis_error = redis.RedisError
        self.prefixed = storage.prefixed_key
        self.hit_windows = storage.get_connection().register_script(HIT_WINDOWS)
        self.windows = windows
        self.outage = RedisOutage(log, "each worker counts rate limits on its own", "rate limits are shared again")
        self.lock = threading.Lock()
        self.unsent: dict[str, list] = {}  # counter key → [hits not sent yet, its window's seconds]
        self.sending: dict[str, int] = {}  # hits sent by the flush under way, not yet answered
        self.known: dict[str, tuple[int, float]] = {}  # counter key → (shared count, when read)
        self.flusher_pid = 0
        # Each worker's flusher starts as the worker is forked (uWSGI calls CPython's fork
        # hooks: py-call-uwsgi-fork-hooks), never in the master; else at the first check.
        started = weakref.WeakMethod(self._start_flusher)
        os.register_at_fork(after_in_child=lambda: started() and started()())

    def hit(self, caller: str):
        if not self.outage.asking():
            return self.DOWN
        if self.flusher_pid != os.getpid():
            self._start_flusher()
        keys = [caller + suffix for _, suffix, _ in self.windows]
        now = time.monotonic()
        with self.lock:
            if self._may_count_ahead(keys, now):
                for key, (_, _, seconds) in zip(keys, self.windows):
                    pending = self.unsent.get(key)
                    if pending is None:
                        self.unsent[key] = [1, seconds]
                    else:
                        pending[0] += 1
                return None
            pending = [self.unsent.pop(key, (0,))[0] for key in keys]
        args = ["1"]
        for (item, _, seconds), hits in zip(self.windows, pending):
            args += [seconds, item.amount, hits]
        answer = self._ask(keys, args)
        if answer is None:
            return self.DOWN
        return answer[0::2], answer[1::2]

    def _may_count_ahead(self, keys: list[str], now: float) -> bool:
        for key, (item, _, _) in zip(keys, self.windows):
            known = self.known.get(key)
            if known is None or now - known[1] > FRESH_SECONDS:
                return False
            pending = self.unsent.get(key)
            ahead = self.sending.get(key, 0) + (pending[0] if pending else 0) + 1
            if ahead * AHEAD_SHARE > item.amount - known[0]:
                return False
        return True

    def _ask(self, keys: list[str], args: list) -> list[int] | None:
        """Run the script (its answer: each count and its seconds left), remember the counts."""
        try:
            answer = self.hit_windows([self.prefixed(key) for key in keys], args)
        except self.redis_error as exc:
            self.outage.failed(exc, RETRY_SHARED_SECONDS)
            return None
        self.outage.answered()
        now = time.monotonic()
        with self.lock:
            for key, count in zip(keys, answer[0::2]):
                known = self.known.get(key)
                # Replies of the flusher and of a request may cross: within a window a count
                # only grows, so the larger of two recent ones is the later.
                if known is None or now - known[1] > FRESH_SECONDS or count >= known[0]:
                    self.known[key] = (count, now)
        return answer

    def _start_flusher(self) -> None:
        """In this process (at fork, one thread: the parent's lock may be held by a thread that
        does not exist here): fresh state and a flusher thread of its own."""
        self.lock = threading.Lock()
        self.unsent, self.sending, self.known = {}, {}, {}
        self.flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, args=(weakref.ref(self),), name="rate-limit-flusher",
                         daemon=True).start()

    @staticmethod
    def _flush_forever(ref) -> None:
        pid = os.getpid()
        while True:
            time.sleep(FLUSH_SECONDS)
            shared = ref()
            if shared is None or shared.flusher_pid != pid:
                return  # its RateLimits is gone (a test's), or replaced by a newer flusher
            try:
                shared.flush()
            except Exception:  # never let the thread die: the next flush tries again
                log.exception("rate limits: a flush to Redis failed")
            del shared

    def flush(self) -> None:
        """Send the hits counted ahead since the last flush, in one script call, and read back
        their counters' shared counts. Redis down: they are dropped (counted nowhere again)."""
        now = time.monotonic()
        with self.lock:
            batch, self.unsent = self.unsent, {}
            self.sending = {key: hits for key, (hits, _) in batch.items()}
            if len(self.known) > 4 * len(batch) + 1024:  # counts nobody hits lately
                self.known = {key: known for key, known in self.known.items() if now - known[1] <= FRESH_SECONDS}
        if not batch:
            return
        if self.outage.asking():
            args = ["0"]
            for hits, seconds in batch.values():
                args += [seconds, 0, hits]
            self._ask(list(batch), args)
        with self.lock:
            self.sending = {}


def _redis_storage(url: str, timeout: float):
    from limits.storage import storage_from_string

    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigurationError("REDIS_URL needs the Python module redis: install mlapi[redis]") from None
    # No retries: one failed call already sends the request to the local counts, so a request
    # waits on Redis at most one timeout (some redis-py versions retry by default: said, not assumed).
    return storage_from_string(url, wrap_exceptions=True, key_prefix="mlapi:ratelimit", socket_timeout=timeout,
                               socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def build_rate_limits(settings) -> RateLimits | None:
    if not settings.rate_limit:
        return None
    return RateLimits(settings.rate_limit, settings.redis_url, settings.redis_timeout_ms)
