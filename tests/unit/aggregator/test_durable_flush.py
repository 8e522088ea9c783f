"""The producer buffer's flush returns only when every queued record was handed over.

Faust's stock buffer gives up after 0.1 s without progress; on a loaded worker
that let offsets be committed (and states published) while changelog records
were still queued in the process (see services/aggregator/durable.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from services.aggregator.durable import _STOCK, DurableProducerBuffer


@contextlib.asynccontextmanager
async def _slow(cls: type[Any], delay: float) -> AsyncIterator[Any]:
    """A running buffer of ``cls`` whose hand-over to the client takes ``delay`` seconds."""

    class Slow(cls):  # type: ignore[misc,valid-type]
        def __post_init__(self) -> None:
            super().__post_init__()
            self.handed: list[Any] = []

        async def _send_pending(self, fut: Any) -> None:
            await asyncio.sleep(delay)  # a client waiting for room in its batch buffer
            self.handed.append(fut)

    buffer = Slow()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    await buffer.start()
    try:
        yield buffer
    finally:
        await buffer.stop()


async def test_flush_waits_for_every_queued_record() -> None:
    async with _slow(DurableProducerBuffer, 0.25) as buffer:
        for n in range(4):
            buffer.put(n)
        await buffer.flush()
        assert buffer.handed == [0, 1, 2, 3]
        assert buffer.size == 0 and buffer.in_hand == 0


async def test_flush_waits_for_the_record_being_handed_over() -> None:
    async with _slow(DurableProducerBuffer, 0.3) as buffer:
        buffer.put("only")
        await asyncio.sleep(0.05)  # the sender took it: the queue is empty now
        assert buffer.size == 0 and buffer.in_hand == 1
        await buffer.flush()
        assert buffer.handed == ["only"]


async def test_flush_does_not_wait_for_records_put_after_it_began() -> None:
    """Under steady load the queue is never empty; a flush covers what was put before."""
    async with _slow(DurableProducerBuffer, 0.05) as buffer:
        for n in range(3):
            buffer.put(n)

        async def keep_putting() -> None:
            for n in range(3, 1000):
                buffer.put(n)
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(keep_putting())
        try:
            await asyncio.wait_for(buffer.flush(), timeout=2)
            assert buffer.handed[:3] == [0, 1, 2]
            assert buffer.size > 0  # later records still queued: the flush did not wait
        finally:
            feeder.cancel()
        await buffer.flush()  # the rest, before the buffer stops
        assert buffer.size == 0


async def test_the_throttle_still_flushes_at_most_n() -> None:
    async with _slow(DurableProducerBuffer, 0.01) as buffer:
        for n in range(50):
            buffer.put(n)
        flushed = await buffer.flush_atmost(5)
        assert 5 <= flushed < 50
        await buffer.flush()
        assert len(buffer.handed) == 50


async def test_the_stock_buffer_still_needs_this_work_around() -> None:
    """If this fails, faust's own flush waits now and durable.py can go."""
    async with _slow(_STOCK, 0.25) as buffer:
        for n in range(4):
            buffer.put(n)
        await buffer.flush()
        assert len(buffer.handed) < 4, "the stock flush waited for every record"
        await asyncio.sleep(1.2)


def test_install_makes_faust_create_the_durable_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    import faust.transport.producer as faust_producer

    from services.aggregator import durable

    monkeypatch.setattr(faust_producer, "ProducerBuffer", _STOCK)
    durable.install()
    assert faust_producer.ProducerBuffer is DurableProducerBuffer
