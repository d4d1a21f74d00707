"""What a user of the shared Redis (REDIS_URL) does while it does not answer: the rate limits,
the prediction cache, the call log. The request goes on without Redis (counted in the process,
answered without the cache, not logged), Redis is not asked again for a few seconds, so no
request waits on it more than once per interval (the call log, whose writes no request waits
on, asks again at once: retry_seconds=0), and one warning per minute says so; one line says
when it is back.
"""
from __future__ import annotations

import logging
import math
import time

from mlapi.errors import cut

RETRY_SECONDS = 5.0
WARN_SECONDS = 60.0


class RedisOutage:
    """One user's view of whether Redis answers. `meanwhile` says what happens without it, `back`
    what comes back with it, both for the log."""

    def __init__(self, log: logging.Logger, meanwhile: str, back: str):
        self.log = log
        self.meanwhile = meanwhile
        self.back = back
        self.down_until = 0.0  # time.monotonic() until which Redis is not asked
        self.warned_at = -math.inf

    def asking(self) -> bool:
        return time.monotonic() >= self.down_until

    def answered(self) -> None:
        if self.down_until:
            self.down_until = 0.0
            self.log.warning("Redis answers again: %s", self.back)

    def failed(self, error: BaseException, retry_seconds: float = RETRY_SECONDS) -> None:
        now = time.monotonic()
        self.down_until = now + retry_seconds
        if now - self.warned_at >= WARN_SECONDS:
            self.warned_at = now
            retry = f", trying Redis again every {retry_seconds:g} s" if retry_seconds else ""
            self.log.warning("Redis does not answer (%s): %s%s", cut(f"{error.__class__.__name__}: {error}", 200),
                             self.meanwhile, retry)
