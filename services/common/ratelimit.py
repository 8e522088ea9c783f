"""Requests per token: a token bucket per token id (429 with Retry-After when empty)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """``rate`` requests per second per token id, bursts up to ``burst``.

    Buckets of idle tokens are dropped oldest first beyond ``max_tokens`` (a dropped
    bucket comes back full, which is what an idle token has anyway)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_tokens: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._max_tokens = max_tokens
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # level, when

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, token_id: str) -> float:
        """Spend one request of ``token_id``: 0.0 if allowed, else seconds until it would be."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        level, then = self._buckets.pop(token_id, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        if level >= 1.0:
            self._buckets[token_id] = (level - 1.0, now)
            wait = 0.0
        else:
            self._buckets[token_id] = (level, now)
            wait = (1.0 - level) / self.rate
        if len(self._buckets) > self._max_tokens:
            self._buckets.popitem(last=False)
        return wait
