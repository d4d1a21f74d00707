"""A reload that reaches every instance (REDIS_URL): a generation counter and a channel in Redis.

The instance asked to reload takes the next generation (INCR), reloads, and publishes a wake-up
on the channel; every other instance's master hears it (one watcher thread per instance, in the
master: each instance reloads once per generation whatever its number of workers), reads the
counter from its own database, and reloads when it differs from the one it last followed.

Why the message is only a wake-up, and why "differs", not "is newer": Redis PUB/SUB ignores the
database number, so every service on one Redis (prod on /0, staging on /1) would hear the
others' channel; the channel's name carries the database number, and even a message that
reaches us from elsewhere (a stray PUBLISH) only makes us read our own counter. And a counter
that restarts (FLUSHDB, a failover without persistence, a new Redis) must still reach the fleet:
an instance at 50 follows the new 1, where "newer" would ignore 1..50.

A message missed while Redis did not answer is caught up by reading the counter again (on
reconnect, and every POLL_SECONDS). An instance that starts later takes the current generation
as the one it followed: it loaded the artifacts as they are now.

Redis down: the reload asked of this instance still happens, its answer says the broadcast was
not delivered (the other instances do not learn of it later: ask again once Redis answers),
and the outage is logged by the shared rule (mlapi.redis_outage).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from mlapi.config import Settings
from mlapi.errors import ConfigurationError
from mlapi.redis_outage import RedisOutage

log = logging.getLogger(__name__)

GENERATION_KEY = "mlapi:reload:generation"
CHANNEL_PREFIX = "mlapi:reload:db"  # + the database number (module docstring)
POLL_SECONDS = 5.0


class FleetReloads:
    def __init__(self, url: str, timeout_ms: int):
        try:
            import redis
        except ImportError:
            raise ConfigurationError("REDIS_URL needs the Python module redis: install mlapi[redis]") from None
        timeout = timeout_ms / 1000
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        # The watcher's own connection: it waits on the channel up to a second at a time.
        self.listener = redis.Redis.from_url(url, socket_timeout=max(timeout, 2.0),
                                             socket_connect_timeout=timeout)
        self.channel = f"{CHANNEL_PREFIX}{self.client.connection_pool.connection_kwargs.get('db', 0)}"
        self.errors = (redis.RedisError, OSError)
        self.outage = RedisOutage(log, "reloads are not broadcast to other instances, nor heard from them",
                                  "reloads reach every instance again")

    def current(self) -> int | None:
        """The fleet's generation; None when Redis does not answer."""
        return self._ask(lambda: int(self.client.get(GENERATION_KEY) or 0))

    def next_generation(self) -> int | None:
        return self._ask(lambda: int(self.client.incr(GENERATION_KEY)))

    def publish(self, generation: int) -> str:
        """What the answer says of the broadcast (the number is for whoever reads the channel by
        hand: the instances read the counter itself)."""
        if self._ask(lambda: self.client.publish(self.channel, str(generation))) is None:
            return ("not delivered: Redis does not answer; the other instances keep their models "
                    "(ask again once it does)")
        return "published"

    def _ask(self, call: Callable):
        if not self.outage.asking():
            return None
        try:
            value = call()
        except self.errors as exc:
            self.outage.failed(exc)
            return None
        self.outage.answered()
        return value

    def watch(self, follow: Callable[[int], None]) -> None:
        """Call follow(generation) with the counter read again on every announcement, and every
        POLL_SECONDS (a thread); follow decides whether it differs from the one it followed."""
        threading.Thread(target=self._watch, args=(follow,), name="mlapi-fleet-reloads", daemon=True).start()

    def _watch(self, follow: Callable[[int], None]) -> None:
        while True:
            try:
                with self.listener.pubsub(ignore_subscribe_messages=True) as channel:
                    channel.subscribe(self.channel)
                    self._catch_up(follow)  # what was announced while not subscribed
                    polled = time.monotonic()
                    while True:
                        message = channel.get_message(timeout=1.0)
                        if message is not None or time.monotonic() - polled >= POLL_SECONDS:
                            self._catch_up(follow)
                            polled = time.monotonic()
            except self.errors as exc:
                self.outage.failed(exc)
            except Exception:  # noqa: BLE001  (a reload's own fault is logged; the watch goes on)
                log.exception("fleet reload watcher")
            time.sleep(POLL_SECONDS)

    def _catch_up(self, follow: Callable[[int], None]) -> None:
        generation = self.current()
        if generation:
            follow(generation)


def build_fleet_reloads(settings: Settings) -> FleetReloads | None:
    return FleetReloads(settings.redis_url, settings.redis_timeout_ms) if settings.redis_url else None
