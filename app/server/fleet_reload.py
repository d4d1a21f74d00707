"""A reload that reaches every instance (REDIS_URL): a generation counter and a channel in Redis.

The instance asked to reload takes the next generation (INCR), reloads, and publishes it; every
other instance's master hears it (one watcher thread per instance, in the master: each
instance reloads once per generation whatever its number of workers) and reloads when the
generation is newer than its own. A message missed while Redis did not answer is caught up by
reading the counter again (on reconnect, and every POLL_SECONDS). An instance that starts
later takes the current generation as its own: it loaded the artifacts as they are now, and
does not reload for an older announcement.

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
CHANNEL = "mlapi:reload"
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
        self.errors = (redis.RedisError, OSError)
        self.outage = RedisOutage(log, "reloads are not broadcast to other instances, nor heard from them",
                                  "reloads reach every instance again")

    def current(self) -> int | None:
        """The fleet's generation; None when Redis does not answer."""
        return self._ask(lambda: int(self.client.get(GENERATION_KEY) or 0))

    def next_generation(self) -> int | None:
        return self._ask(lambda: int(self.client.incr(GENERATION_KEY)))

    def publish(self, generation: int) -> str:
        """What the answer says of the broadcast."""
        if self._ask(lambda: self.client.publish(CHANNEL, str(generation))) is None:
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
        """Call follow(generation) for every generation announced from now on (a thread)."""
        threading.Thread(target=self._watch, args=(follow,), name="mlapi-fleet-reloads", daemon=True).start()

    def _watch(self, follow: Callable[[int], None]) -> None:
        while True:
            try:
                with self.listener.pubsub(ignore_subscribe_messages=True) as channel:
                    channel.subscribe(CHANNEL)
                    self._catch_up(follow)  # what was announced while not subscribed
                    polled = time.monotonic()
                    while True:
                        message = channel.get_message(timeout=1.0)
                        if message is not None:
                            follow(int(message["data"]))
                        if time.monotonic() - polled >= POLL_SECONDS:
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
