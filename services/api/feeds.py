"""Fan-out of live changes to WebSocket clients.

Each client has a bounded queue. Publishing never waits for a client: a client
whose queue is full is dropped from the hub and its socket closed with code
4008 ("too slow, reconnect and resync"), so one slow reader never delays the
others nor grows memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008

FEED_CLIENTS = Gauge("bw_api_feed_clients", "Connected feed clients")
FEED_SENT = Counter("bw_api_feed_messages_total", "Messages queued to feed clients", ["type"])
FEED_DROPPED = Counter(
    "bw_api_feed_clients_dropped_total", "Clients dropped because their queue was full"
)


class Subscriber:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=maxsize)
        self.too_slow = False


class Hub:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[Subscriber] = set()
        self._queue_size = queue_size

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self._queue_size)
        self._subscribers.add(sub)
        FEED_CLIENTS.set(len(self._subscribers))
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        FEED_CLIENTS.set(len(self._subscribers))

    def publish(self, kind: str, payload: dict[str, Any], cursor: str) -> None:
        if not self._subscribers:
            return
        message = orjson.dumps({"type": kind, "payload": payload, "cursor": cursor})
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                sub.too_slow = True
                self.unsubscribe(sub)
                FEED_DROPPED.inc()
                # Wake the writer so it closes the socket; drop the oldest to make room.
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)
        FEED_SENT.labels(kind).inc()

    def close_all(self) -> None:
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self._subscribers.clear()
        FEED_CLIENTS.set(0)
