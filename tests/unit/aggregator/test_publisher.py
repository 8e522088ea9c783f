"""The publisher sends queued outboxes in order, each after a flush that followed
its queueing, without holding the input path (services/aggregator/publisher.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.publisher import Publisher, PublisherFailed


class Broker:
    """A flush and a send that record what happened, in order."""

    def __init__(self, flush_delay: float = 0.0, send_delay: float = 0.0) -> None:
        self.log: list[tuple[str, Any]] = []
        self.flush_delay = flush_delay
        self.send_delay = send_delay
        self.fail_on: bytes | None = None
        self.gate: asyncio.Event | None = None

    async def flush(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.flush_delay)
        self.log.append(("flush", None))

    async def send(self, key: bytes, outbox: dict[str, Any]) -> None:
        await asyncio.sleep(self.send_delay)
        if key == self.fail_on:
            raise OSError("broker gone")
        self.log.append(("send", (key, outbox["v"])))

    @property
    def sent(self) -> list[tuple[bytes, int]]:
        return [item for what, item in self.log if what == "send"]


@contextlib.asynccontextmanager
async def running(publisher: Publisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def box(key: str, v: int) -> tuple[bytes, dict[str, Any]]:
    return key.encode(), {"v": v}


async def test_put_returns_before_the_flush_and_sends_follow_in_order() -> None:
    broker = Broker(flush_delay=0.05)
    publisher = Publisher(broker.flush, broker.send)
    async with running(publisher):
        await asyncio.wait_for(publisher.put([box("a", 1), box("b", 1)]), timeout=0.02)
        assert broker.log == []  # the input path did not wait for the broker
        await publisher.put([box("a", 2)])
        await publisher.drain()
    assert broker.sent == [(b"a", 1), (b"b", 1), (b"a", 2)]
    assert broker.log[0] == ("flush", None)


async def test_what_is_queued_during_a_flush_goes_out_after_one_more_flush() -> None:
    broker = Broker()
    broker.gate = asyncio.Event()
    publisher = Publisher(broker.flush, broker.send)
    async with running(publisher):
        await publisher.put([box("a", 1)])
        await asyncio.sleep(0.01)  # the publisher is inside the first flush
        for v in range(2, 6):
            await publisher.put([box("a", v)])
        broker.gate.set()
        await publisher.drain()
    # One flush for the first group, one for everything queued while it ran.
    assert broker.log == [
        ("flush", None),
        ("send", (b"a", 1)),
        ("flush", None),
        *[("send", (b"a", v)) for v in range(2, 6)],
    ]


async def test_a_full_queue_holds_the_caller_until_there_is_room() -> None:
    broker = Broker()
    broker.gate = asyncio.Event()
    publisher = Publisher(broker.flush, broker.send, max_pending=3)
    async with running(publisher):
        await publisher.put([box("a", 1)])
        await asyncio.sleep(0.01)  # taken: the publisher waits in its flush
        await publisher.put([box("a", 2), box("a", 3), box("a", 4)])
        held = asyncio.create_task(publisher.put([box("a", 5)]))
        await asyncio.sleep(0.05)
        assert not held.done()
        assert publisher.pending == 5  # 4 queued, 1 taken and not sent yet
        broker.gate.set()
        await asyncio.wait_for(held, timeout=1)
        await publisher.drain()
    assert broker.sent == [(b"a", v) for v in range(1, 6)]


async def test_a_failed_send_stops_the_publisher_and_every_caller_hears_of_it() -> None:
    broker = Broker()
    broker.fail_on = b"bad"
    publisher = Publisher(broker.flush, broker.send)
    task = asyncio.create_task(publisher.run())
    await publisher.put([box("a", 1), box("bad", 1), box("c", 1)])
    with pytest.raises(OSError, match="broker gone"):
        await task
    assert broker.sent == [(b"a", 1)]  # nothing after the failure, nothing out of order
    with pytest.raises(PublisherFailed, match="broker gone"):
        await publisher.drain()
    with pytest.raises(PublisherFailed):
        await publisher.put([box("d", 1)])


async def test_drain_with_nothing_queued_returns_at_once() -> None:
    broker = Broker()
    publisher = Publisher(broker.flush, broker.send)
    async with running(publisher):
        await asyncio.wait_for(publisher.drain(), timeout=0.1)
        await publisher.put([])
        await asyncio.wait_for(publisher.drain(), timeout=0.1)
    assert broker.log == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "c"]), min_size=0, max_size=4),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.sampled_from([0.0, 0.001, 0.003]), min_size=1, max_size=12),
)
def test_every_send_follows_a_flush_that_started_after_its_put(
    batches: list[list[str]], pauses: list[float]
) -> None:
    """Whatever the timing: every outbox is sent once, in queue order, and a flush
    started after it was queued (so the table write it carries is in Kafka)."""

    async def scenario() -> None:
        events: list[tuple[str, Any]] = []
        counter = 0

        async def flush() -> None:
            events.append(("flush-start", None))
            await asyncio.sleep(0.002)

        async def send(key: bytes, outbox: dict[str, Any]) -> None:
            events.append(("send", outbox["v"]))

        publisher = Publisher(flush, send, max_pending=5)
        async with running(publisher):
            for i, keys in enumerate(batches):
                outboxes = []
                for key in keys:
                    counter += 1
                    outboxes.append(box(key, counter))
                    events.append(("queued", counter))
                await publisher.put(outboxes)
                await asyncio.sleep(pauses[i % len(pauses)])
            await publisher.drain()
        sent = [v for what, v in events if what == "send"]
        assert sent == list(range(1, counter + 1))
        for v in sent:
            queued_at = events.index(("queued", v))
            sent_at = events.index(("send", v))
            assert ("flush-start", None) in events[queued_at:sent_at]

    asyncio.run(scenario())
