"""Requests per token: a token bucket with bursts, Retry-After, and a bounded table."""

from __future__ import annotations

import pytest

from services.common.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_bucket_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)

    waits = [limiter.take("t1") for _ in range(4)]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.5)


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("t1")

    clock.now += 0.5
    assert limiter.take("t1") == 0.0
    assert limiter.take("t1") > 0
    clock.now += 100
    assert [limiter.take("t1") for _ in range(4)].count(0.0) == 3


def test_tokens_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())

    assert limiter.take("t1") == 0.0
    assert limiter.take("t1") > 0
    assert limiter.take("t2") == 0.0


def test_refused_requests_do_not_drain_the_bucket_further() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    limiter.take("t1")
    for _ in range(10):
        limiter.take("t1")

    clock.now += 1.0

    assert limiter.take("t1") == 0.0


def test_rate_zero_is_no_limit() -> None:
    limiter = RateLimiter(rate=0, burst=1)

    assert not limiter.enabled
    assert all(limiter.take("t") == 0.0 for _ in range(1000))


def test_idle_buckets_are_dropped_beyond_the_bound() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_tokens=2, clock=Clock())
    for token in ("a", "b", "c"):
        limiter.take(token)

    assert limiter.take("a") == 0.0  # forgotten, so full again
    assert limiter.take("c") > 0
