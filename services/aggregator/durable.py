"""A producer buffer whose ``flush`` really waits (faust-streaming 0.15.3 work-around).

Faust sends table changelog records through ``ProducerBuffer``: ``table[k] = v``
queues the record and a background task hands it to aiokafka. ``Producer.flush``
first drains that buffer, then flushes aiokafka. But the stock
``ProducerBuffer.flush_atmost(None)`` gives up as soon as no message left the
buffer within 0.1 s, and it also returns while the last message taken from the
queue is still being handed over. On a loaded machine both happen: ``flush``
returns with changelog records still queued in this process.

Two things depend on that flush being complete:

- Faust flushes the producer before it commits input offsets. A record whose
  effect is still queued can then be committed; if the worker dies, its
  successor restores a table without that effect and starts after it.
- The aggregator flushes before it sends a section's state, so no state is
  visible unless the aggregate that produced it is durable (``agents._publish``).

:class:`DurableProducerBuffer` keeps the buffer's throttle (``wait_until_ebb``
still flushes at most ``max_messages``), but a full flush returns only when the
queue is empty and nothing is being handed over. :func:`install` makes Faust
create it; call it before the app's producer exists.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust.transport.producer as faust_producer
from mode import Service

log = logging.getLogger(__name__)

_STOCK = faust_producer.ProducerBuffer


class DurableProducerBuffer(_STOCK):
    """``ProducerBuffer`` with a flush that returns only when every record was handed over."""

    #: log a warning when a full flush has waited this long (it keeps waiting)
    warn_after = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.in_hand = 0  # taken from the queue, not yet handed to the Kafka client
        self.queued_in = 0  # records ever put (not threaded: the queue is FIFO)
        self.handed_over = 0  # records ever handed to the Kafka client

    def put(self, fut: Any) -> None:
        super().put(fut)
        self.queued_in += 1

    async def flush_atmost(self, max_messages: int | None) -> int:
        if max_messages is not None:
            # wait_until_ebb's back-pressure throttle: the stock behaviour is right there.
            flushed: int = await super().flush_atmost(max_messages)
            return flushed
        # Every record put before this call, not the records put while it waits:
        # under steady load the queue is never empty, and waiting for that held
        # each publication (and commit) back by seconds (bench.feeds --rate 1000).
        # One FIFO queue and one sender: once ``target`` were handed over, every
        # record put before the call was.
        target = self.queued_in
        app: Any = self.app
        threaded = bool(app is not None and app.conf.producer_threaded)
        waited = 0.0
        while (self.size or self.in_hand) if threaded else self.handed_over < target:
            if self.state != "running":
                raise RuntimeError("Cannot flush: producer buffer not running")
            # No await between the check above and the wait below, so the sender
            # cannot set the event in between and be missed.
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                waited += 1.0
                if waited % self.warn_after == 0:
                    log.warning(
                        "producer flush still waiting after %.0f s: %s queued, %s in hand",
                        waited,
                        self.size,
                        self.in_hand,
                    )
        return 0

    @Service.task
    async def _handle_pending(self) -> None:
        get_pending = self.pending.get
        while not self.should_stop:
            msg: Any = await get_pending()
            self.in_hand += 1
            try:
                await self._send_pending(msg)
            finally:
                self.in_hand -= 1
                self.handed_over += 1
                self.message_sent.set()


def install() -> None:
    """Make Faust's producers use :class:`DurableProducerBuffer` (idempotent)."""
    faust_producer.ProducerBuffer = DurableProducerBuffer  # type: ignore[misc]
