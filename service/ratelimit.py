"""A token bucket per caller, in process: ``RAG_RATE_LIMIT_PER_MINUTE`` requests a minute, in bursts of
up to as many.

Each worker process counts on its own, so N workers let a key make up to N times the rate; a limit
shared across processes or replicas belongs in the proxy in front of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from service.errors import RateLimited

# Beyond this many callers (client addresses, when the API is open), buckets that have refilled are
# dropped: a full bucket is the same as none, so forgetting it changes nothing.
MAX_BUCKETS = 10_000


class RateLimiter:
    """``check(caller)`` takes one token from the caller's bucket or raises :class:`RateLimited`.

    Example::

        limiter = RateLimiter(per_minute=60)
        limiter.check("key 1")   # fine 60 times in a burst, then once a second
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when counted)
        self._lock = threading.Lock()

    def check(self, caller: str) -> None:
        """:raises RateLimited: the caller's bucket is empty; ``retry_after_s`` says when a token is back."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(caller, now)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.per_second)
                raise RateLimited(
                    f"too many requests: the limit is {self.capacity:g} a minute "
                    "(RAG_RATE_LIMIT_PER_MINUTE); try again later",
                    retry_after_s=max(1, wait),
                )
            self._buckets[caller] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_full(now)

    def _tokens(self, caller: str, now: float) -> float:
        tokens, then = self._buckets.get(caller, (self.capacity, now))
        return min(self.capacity, tokens + (now - then) * self.per_second)

    def _forget_full(self, now: float) -> None:
        for caller in [c for c in self._buckets if self._tokens(c, now) >= self.capacity]:
            del self._buckets[caller]
