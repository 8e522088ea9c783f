"""The idempotency cache: acknowledged ids are duplicates, in-flight ids are waited for,
failed ones are forgotten (never a false duplicate)."""

from __future__ import annotations

import asyncio

from services.ingest.dedupe import Idempotency


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_acknowledged_id_is_a_duplicate_afterwards() -> None:
    idem = Idempotency(max_size=10, ttl=60)

    first = idem.claim(["a", "b"])
    idem.settle(["a", "b"], acked=True)
    second = idem.claim(["b", "c"])

    assert first.new == [0, 1] and first.duplicate == []
    assert second.new == [1] and second.duplicate == [0]


async def test_a_failed_produce_is_forgotten_so_the_retry_is_new() -> None:
    idem = Idempotency(max_size=10, ttl=60)

    idem.claim(["a"])
    idem.settle(["a"], acked=False)

    assert idem.claim(["a"]).new == [0]
    assert len(idem) == 0


async def test_an_id_repeated_in_one_request_is_produced_once() -> None:
    idem = Idempotency(max_size=10, ttl=60)

    claim = idem.claim(["a", "b", "a", "a"])

    assert claim.new == [0, 1]
    assert claim.duplicate == [2, 3]


async def test_a_concurrent_request_waits_for_the_one_producing_the_id() -> None:
    idem = Idempotency(max_size=10, ttl=60)
    idem.claim(["a", "b"])

    other = idem.claim(["b", "c"])

    assert other.new == [1]
    [(pos, flight)] = other.waiting
    assert pos == 0
    waiter = asyncio.ensure_future(idem.wait([("b", flight)], timeout=1))
    await asyncio.sleep(0)
    assert not waiter.done()
    idem.settle(["a"], acked=True)
    await asyncio.sleep(0)
    assert not waiter.done()  # "b" is not decided yet
    idem.settle(["b"], acked=True)
    assert await waiter is True
    assert idem.in_flight == 1  # "c", still the other request's


async def test_a_waiter_learns_about_a_failure_too() -> None:
    idem = Idempotency(max_size=10, ttl=60)
    idem.claim(["a", "b"])
    [(_, flight)] = idem.claim(["a"]).waiting

    idem.settle(["a"], acked=False)
    idem.settle(["b"], acked=True)

    assert await idem.wait([("a", flight)], timeout=1) is False
    assert idem.in_flight == 0


async def test_a_waiter_gives_up_at_its_deadline() -> None:
    idem = Idempotency(max_size=10, ttl=60)
    idem.claim(["a"])
    [(_, flight)] = idem.claim(["a"]).waiting

    assert await idem.wait([("a", flight)], timeout=0.05) is False


async def test_the_cache_is_bounded_oldest_out() -> None:
    idem = Idempotency(max_size=3, ttl=60)
    for key in "abcde":
        idem.claim([key])
        idem.settle([key], acked=True)

    assert len(idem) == 3
    assert idem.claim(["a", "b", "c", "d", "e"]).new == [0, 1]


async def test_ids_expire_after_the_ttl() -> None:
    clock = Clock()
    idem = Idempotency(max_size=10, ttl=60, clock=clock)
    idem.claim(["a"])
    idem.settle(["a"], acked=True)
    clock.now += 30
    idem.claim(["b"])
    idem.settle(["b"], acked=True)

    clock.now += 31

    assert idem.is_acked("b")
    assert not idem.is_acked("a")
    idem.claim(["c"])
    idem.settle(["c"], acked=True)  # trims expired entries from the old end
    assert len(idem) == 2


async def test_size_zero_remembers_nothing_but_still_guards_in_flight_ids() -> None:
    idem = Idempotency(max_size=0, ttl=60)
    idem.claim(["a"])

    assert len(idem.claim(["a"]).waiting) == 1
    idem.settle(["a"], acked=True)
    assert idem.claim(["a"]).new == [0]
