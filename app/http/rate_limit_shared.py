"""Rate-limit counts shared by every process and instance through Redis (REDIS_URL), without
a request waiting for Redis unless its caller is near a limit.

Each worker counts its hits locally and sends them, every FLUSH_SECONDS, in one script call for
every counter hit since (INCRBY, EXPIRE on the first) that answers the shared counts. A check is
judged on the last shared count read (at most FRESH_SECONDS old) plus this process's hits not
yet in it, and counted ahead of Redis only while those hits stay within an AHEAD_SHARE-th of
what that count leaves of every window; otherwise (a first request, a count not read lately, a
caller near or at a limit, a small limit such as 5/minute) it waits for Redis: one script round
trip that adds its pending hits and this one to every window in order until one is over, and
answers each count and its time left, so refusals and small limits are exact. Overshoot: P
processes hitting one caller are together ahead of Redis by at most P/AHEAD_SHARE of what the
counts they last read left: none while P ≤ AHEAD_SHARE read at about the same time; past that,
bounded by that share and the hits between reads.

Who sends the hits: the requests themselves. The check that finds the last flush FLUSH_SECONDS
old writes the next one on a connection of the process's own and returns at once; a later check
reads the answer once it has arrived (one line: the counts), as the prediction cache's and the
call log's writes do (app/redis_writes.py). A thread did it before, and cost M1 18–25 % of its
req/s at 16 connections under uWSGI (server CPU +50 µs a request; py-spy: the thread waited for
the GIL 40 % of the time, each wake-up forcing the request thread to hand it over, at
the request thread's every I/O). A thread remains for the hits of a process whose requests
stopped: it wakes every IDLE_FLUSH_SECONDS, finds a recent flush and sleeps again, unless there
is none, so the shared counts catch up within that interval once the requests stop.

Redis down or slower than the timeout: the caller (rate_limit.RateLimits) counts in the
process; a flush Redis did not take is not counted again. See rate_limit.py for why.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref

from mlapi.errors import ConfigurationError, cut
from mlapi.redis_outage import RETRY_SECONDS, RedisOutage
from mlapi.redis_writes import arrived, packed, start_idle_thread

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.025  # how often a busy worker sends its hits to Redis and reads the shared counts
IDLE_FLUSH_SECONDS = 0.25  # how late the hits of a worker whose requests stopped reach Redis
FRESH_SECONDS = 0.1  # a shared count older than this is not judged on: the check asks Redis
AHEAD_SHARE = 8  # a process counts ahead of Redis at most this share of what the shared count leaves

# limits' incr_expire for every window at once: KEYS are the counters, ARGV each counter's
# window seconds, amount and hits already allowed. A request's hit goes to the windows in order
# until one is over its amount (the rest get only their allowed hits, or are only read); each
# count is answered with its seconds left.
HIT_WINDOWS = """
local answer, over = {}, false
for i, key in ipairs(KEYS) do
  local add = tonumber(ARGV[3 * i])
  if not over then add = add + 1 end
  local count
  if add > 0 then
    count = redis.call("incrby", key, add)
    if count == add then redis.call("expire", key, ARGV[3 * i - 2]) end
  else
    count = tonumber(redis.call("get", key) or 0)
  end
  over = over or count > tonumber(ARGV[3 * i - 1])
  answer[2 * i - 1] = count
  answer[2 * i] = redis.call("ttl", key)
end
return answer
"""
# The flush: ARGV holds each counter's window seconds and hits; the new counts come back as one
# status line ("+12 7\r\n"), which a request reads off the socket without redis-py's parser.
ADD_HITS = b"""
local counts = {}
for i, key in ipairs(KEYS) do
  local add = tonumber(ARGV[2 * i])
  local count = redis.call("incrby", key, add)
  if count == add then redis.call("expire", key, ARGV[2 * i - 1]) end
  counts[i] = count
end
return redis.status_reply(table.concat(counts, " "))
"""


class SharedCounts:
    """The counts in Redis, with this process's hits sent behind the requests (see the module's
    docstring): `hit` answers None when counted ahead, DOWN when Redis does not answer, else
    the windows' shared counts and seconds left."""

    DOWN = object()

    def __init__(self, url: str, timeout: float, windows):
        storage = redis_storage(url, timeout)
        import redis

        self.redis_errors = (redis.RedisError, OSError)
        self.prefixed = storage.prefixed_key
        self.client = storage.get_connection()
        self.hit_windows = self.client.register_script(HIT_WINDOWS)
        self.timeout = timeout
        self.windows = windows
        self.outage = RedisOutage(log, "each worker counts rate limits on its own", "rate limits are shared again")
        self._start_in_process()
        # At fork (one thread: a lock another thread of the parent held would never be released
        # here), fresh state: the parent's hits, flush and connection are not this process's.
        fresh = weakref.WeakMethod(self._start_in_process)
        os.register_at_fork(after_in_child=lambda: fresh() and fresh()())

    def _start_in_process(self) -> None:
        self.lock = threading.Lock()
        self.unsent: dict[str, list] = {}  # counter key → [hits not sent yet, its window's seconds]
        self.sending: dict[str, int] = {}  # hits of the flush under way, in the order sent
        self.known: dict[str, tuple[int, float]] = {}  # counter key → (shared count, when read)
        self.connection = None  # the flushes' own, made in this process at its first flush
        self.sent_at = 0.0  # when the flush under way went (0: none is)
        self.reply = b""
        self.flushed_at = time.monotonic()
        self.idle_flusher = None  # started by the process's first check, never in the master

    def hit(self, caller: str):
        if not self.outage.asking():
            return self.DOWN
        if self.idle_flusher is None:
            self.idle_flusher = start_idle_thread(self, "flush_if_idle", "idle_flusher", IDLE_FLUSH_SECONDS,
                                                  "rate-limit-idle-flusher")
        keys = [caller + suffix for _, suffix, _ in self.windows]
        with self.lock:
            # Read under the lock: another thread may have just waited out a connect to Redis
            # and found it down; this check must not wait for Redis a second time.
            if not self.outage.asking():
                return self.DOWN
            now = time.monotonic()
            if self.sent_at:
                self._read_flush(now)
            if self._may_count_ahead(keys, now):
                for key, (_, _, seconds) in zip(keys, self.windows):
                    pending = self.unsent.get(key)
                    if pending is None:
                        self.unsent[key] = [1, seconds]
                    else:
                        pending[0] += 1
                if not self.sent_at and now - self.flushed_at >= FLUSH_SECONDS:
                    self._send_flush(now)
                return None
            pending = [self.unsent.pop(key, (0,))[0] for key in keys]
        args = []
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
        """Run the script, waiting (its answer: each count and its seconds left); remember the counts."""
        try:
            answer = self.hit_windows([self.prefixed(key) for key in keys], args)
        except self.redis_errors as exc:
            self.outage.failed(exc, RETRY_SECONDS)
            return None
        self.outage.answered()
        with self.lock:
            self._remember(keys, answer[0::2], time.monotonic())
        return answer

    def _remember(self, keys, counts, now: float) -> None:
        for key, count in zip(keys, counts):
            known = self.known.get(key)
            # A flush's answer and a check's may cross: within a window a count only grows, so
            # the larger of two recent ones is the later.
            if known is None or now - known[1] > FRESH_SECONDS or count >= known[0]:
                self.known[key] = (count, now)

    # ---- the flush, sent by a request and read by a later one (under self.lock) ----------------
    def _send_flush(self, now: float) -> None:
        batch, self.unsent = self.unsent, {}
        self.flushed_at = now
        if len(self.known) > 4 * len(batch) + 1024:  # counts nobody hits lately
            self.known = {key: known for key, known in self.known.items() if now - known[1] <= FRESH_SECONDS}
        if not batch:
            return
        arguments = [b"EVAL", ADD_HITS, b"%d" % len(batch)]
        arguments += [self.prefixed(key).encode() for key in batch]
        for hits, seconds in batch.values():
            arguments += [b"%d" % seconds, b"%d" % hits]
        try:
            if self.connection is not None and arrived(self.connection._sock):
                # Bytes with no flush under way: Redis closed the connection (a restart, a
                # failover, an idle timeout). Not an outage: a fresh connection says.
                self.connection.disconnect()
                self.connection = None
            if self.connection is None:
                self.connection = self.client.connection_pool.make_connection()
                self.connection.connect()
            self.connection.send_packed_command([packed(*arguments)], check_health=False)
        except self.redis_errors as exc:
            self._flush_failed(exc)
            return
        self.sending = {key: hits for key, (hits, _) in batch.items()}
        self.sent_at, self.reply = now, b""

    def _read_flush(self, now: float) -> None:
        """The flush's answer if it has arrived (never waiting for it); Redis counts as down once
        it is later than the timeout."""
        try:
            sock = self.connection._sock
            while b"\n" not in self.reply and arrived(sock):
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self.reply += data
            if b"\n" not in self.reply:
                if now - self.sent_at > self.timeout:
                    raise TimeoutError(f"a rate-limit flush unanswered for {now - self.sent_at:.3f} s")
                return
            if not self.reply.startswith(b"+"):
                raise ConnectionError(f"Redis refused a flush: {cut(self.reply.decode(errors='replace'), 200)}")
            counts = [int(count) for count in self.reply[1:].split()]
        except (*self.redis_errors, ValueError) as exc:
            self._flush_failed(exc)
            return
        self.outage.answered()
        # The counts are as old as the flush, not as the moment its answer was read: an answer
        # read late (a worker idle since it sent) must not pass for a fresh count.
        self._remember(list(self.sending), counts, self.sent_at)
        self.sending, self.sent_at = {}, 0.0

    def _flush_failed(self, exc: BaseException) -> None:
        if self.connection is not None:
            self.connection.disconnect()
        self.connection = None
        self.sending, self.sent_at = {}, 0.0  # dropped: not counted again
        self.outage.failed(exc, RETRY_SECONDS)

    def flush_if_idle(self) -> None:
        """Read the answer of a flush no request has read, then send the hits no request has
        sent for IDLE_FLUSH_SECONDS, waiting for each answer (no request is waiting on this
        process meanwhile: its requests stopped)."""
        for _ in range(2):  # the flush under way, if any; then what is left unsent
            with self.lock:
                now = time.monotonic()
                if self.sent_at:
                    self._read_flush(now)
                if not self.sent_at:
                    if not self.unsent or now - self.flushed_at < IDLE_FLUSH_SECONDS:
                        return
                    if not self.outage.asking():
                        self.unsent = {}
                        return
                    self._send_flush(now)
                    if not self.sent_at:
                        return
                sock, wait = self.connection._sock, self.sent_at + self.timeout - now
            try:
                arrived(sock, max(0.0, wait) + 0.001)
            except (ValueError, OSError):  # a request closed the connection meanwhile
                return
            with self.lock:
                if self.sent_at:
                    self._read_flush(time.monotonic())


def redis_storage(url: str, timeout: float):
    """limits' Redis storage (its key prefix, its client) with one timeout and no retries."""
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
