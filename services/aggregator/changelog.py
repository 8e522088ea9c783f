"""The section table's writes, sent to its changelog straight through aiokafka.

``table[k] = v`` in faust-streaming 0.15.3 builds a ``FutureMessage`` and a
``PendingMessage``, queues them in the producer buffer, and a background task
takes them off one at a time, awaiting Faust's ``Topic.publish_message`` and
``Producer.send`` before aiokafka sees the record. With one event per input
record every live update writes two or three records (segment, core, now and
then a checkpoint), and that path cost more CPU than the counting itself
(py-spy, ``python -m bench.feeds --clients 10``).

:class:`ChangelogWriter` keeps Faust's table as the store (``table.data``, which
recovery rebuilds from the same changelog topic) and sends each write as one
aiokafka ``send`` on the partition the table would have chosen, in the order
the writes were made. What the rest of the worker relies on stays true:

- a section's records keep their order: one producer, one partition per
  section, idempotence on;
- :meth:`durable` returns once every record sent before it is acknowledged,
  and raises if one failed, so a state is never published (``publisher``) ahead
  of the aggregate that produced it;
- Faust's own flush before it commits input offsets still waits for these
  records: they sit in the same aiokafka producer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class ChangelogWriter:
    """Writes to ``table`` whose changelog records go out on :meth:`send`."""

    def __init__(self, table: Any, producer: Callable[[], Any]) -> None:
        self._table = table
        self._producer = producer  # the app's aiokafka producer, once started
        self._queued: list[tuple[bytes, bytes | None]] = []
        self._in_flight: list[asyncio.Future[Any]] = []

    def set(self, key: bytes, value: bytes) -> None:
        self._table.data[key] = value
        self._queued.append((key, value))

    def delete(self, key: bytes) -> bool:
        """Delete ``key`` if present (a tombstone goes to the changelog); whether it was."""
        data = self._table.data
        if key not in data:
            return False
        del data[key]
        self._queued.append((key, None))
        return True

    @property
    def queued(self) -> int:
        return len(self._queued)

    async def send(self) -> None:
        """Hand every queued write to the producer, in order."""
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        producer = self._producer()
        topic = self._table.changelog_topic.get_topic_name()
        partition_for = self._table.partition_for_key
        in_flight = self._in_flight
        for key, value in queued:
            in_flight.append(
                await producer.send(topic, value, key=key, partition=partition_for(key))
            )

    async def durable(self) -> None:
        """Until every record sent so far is acknowledged; raises if one was not."""
        pending, self._in_flight = self._in_flight, []
        if pending:
            await asyncio.gather(*pending)
