"""Publishing the outboxes of handled batches off the input path (group commit).

A batch's sections are written to the table with their publication as the
*outbox* (``agents._store``), and only then queued here. The publisher flushes
the producer, so every table write queued so far is in Kafka, and then sends
the queued states and alert transitions in the order they were queued.

Before this, each batch flushed and sent inline: the agent waited ~20 ms for
the changelog acknowledgements before it took the next batch, so records
waited a whole handle-and-publish cycle on top of the batch window (measured
with ``python -m bench.feeds``: a batch took ~50 ms of records, not the 20 ms
window). Now the agent takes the next batch while the previous one is being
published, and everything queued during one flush goes out after the next
single flush.

Nothing is lost if the worker dies with outboxes queued: they are in the table,
and whoever restores a section sends its outbox again (``agents._load``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Outbox = tuple[bytes, dict[str, Any]]


class PublisherFailed(RuntimeError):
    """The publisher could not send; the worker must stop (its outboxes are in the table)."""


class Publisher:
    """One task sends what ``put`` queued, in order, one producer flush per group.

    ``put`` returns as soon as the outboxes are queued, unless more than
    ``max_pending`` are waiting: then it waits for room, so a stalled broker
    holds the input back instead of growing memory.
    """

    def __init__(
        self,
        flush: Callable[[], Awaitable[None]],
        send: Callable[[bytes, dict[str, Any]], Awaitable[None]],
        max_pending: int = 5_000,
    ) -> None:
        self._flush = flush
        self._send = send
        self.max_pending = max_pending
        self._queue: deque[Outbox] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
        self._failed: BaseException | None = None
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Outboxes queued or being sent, not sent yet."""
        return len(self._queue) + self._in_flight

    def _check(self) -> None:
        if self._failed is not None:
            raise PublisherFailed(f"publishing failed: {self._failed!r}") from self._failed

    async def put(self, outboxes: list[Outbox]) -> None:
        """Queue ``outboxes`` (written to the table already) to be sent in this order."""
        self._check()
        if not outboxes:
            return
        self._queue.extend(outboxes)
        self._idle.clear()
        self._wake.set()
        while len(self._queue) > self.max_pending:
            self._room.clear()
            await self._room.wait()
            self._check()

    async def drain(self) -> None:
        """Until everything queued so far has been sent."""
        await self._idle.wait()
        self._check()

    async def run(self) -> None:
        """The sending task: runs until cancelled, or until a flush or send fails."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while self._queue:
                    group = list(self._queue)
                    self._queue.clear()
                    self._room.set()
                    self._in_flight = len(group)
                    await self._flush()
                    for key, outbox in group:
                        await self._send(key, outbox)
                        self._in_flight -= 1
            except Exception as exc:
                self._failed = exc
                self._in_flight = 0
                raise
            finally:
                if self._failed is not None or not self._queue:
                    self._idle.set()
                    self._room.set()
