"""Live feeds: cursors, replay after a reconnect, filters and fan-out.

Every feed message is ``{"type", "payload", "cursor"}``. The cursor is the
vector of Kafka offsets the API has applied when it sent the message, one per
topic-partition (``s3-120_a0-7_k0-2``: section-state p3 up to offset 120,
alerts p0 up to 7, acks p0 up to 2). A client that reconnects with its last
cursor gets exactly the messages it missed, in order, from a bounded replay
log; if the log no longer reaches back that far, it gets one ``resync``
message with the full snapshot instead, and goes on live from there.

Each client has a bounded queue. Publishing never waits for a client: a
client whose queue is full is dropped and its socket closed with code 4008
(too slow: reconnect with your cursor), so one slow reader never delays the
others nor grows memory without bound. Dropped clients are counted.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from schemas.models import SEVERITY_ORDER

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008

FEED_CLIENTS = Gauge("bw_api_feed_clients", "Connected feed clients")
FEED_SENT = Counter("bw_api_feed_messages_total", "Messages queued to feed clients", ["type"])
FEED_DROPPED = Counter(
    "bw_api_feed_clients_dropped_total", "Clients dropped because their queue was full"
)
FEED_DROPPED_MESSAGES = Counter(
    "bw_api_feed_messages_dropped_total", "Messages not delivered to clients that were too slow"
)
FEED_RESYNCS = Counter("bw_api_feed_resyncs_total", "Reconnects beyond the replay horizon")

# Short names of the topics in a cursor.
TOPIC_CODES = {"section_state": "s", "alert": "a", "ack": "k"}


class CursorError(ValueError):
    """A cursor that does not parse."""


def encode_cursor(position: dict[str, int]) -> str:
    return "_".join(f"{tp}-{off}" for tp, off in sorted(position.items()))


def decode_cursor(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    if not text:
        return out
    for part in text.split("_"):
        tp, sep, off = part.partition("-")
        if not sep or not tp or not off.isdigit() or tp[0] not in "sak" or not tp[1:].isdigit():
            raise CursorError(f"not a borderwatch cursor: {text!r}")
        out[tp] = int(off)
    return out


@dataclass(frozen=True)
class Filter:
    """What one client wants: sections (ids or globs), countries, kinds whose counts
    changed, a minimum severity (alert severity, section level), message types."""

    sections: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    min_severity: str | None = None
    types: frozenset[str] = frozenset({"section_state", "alert", "ack"})

    def accepts(self, entry: Entry) -> bool:
        if entry.type not in self.types:
            return False
        if self.sections and not any(
            fnmatch.fnmatchcase(entry.section_id, p) for p in self.sections
        ):
            return False
        if self.countries and entry.country not in self.countries:
            return False
        if self.min_severity and entry.severity is not None:
            if SEVERITY_ORDER[entry.severity] < SEVERITY_ORDER[self.min_severity]:
                return False
        if self.kinds and entry.type == "section_state":
            if not set(self.kinds) & entry.changed_kinds:
                return False
        return True


@dataclass
class Entry:
    """One message in the replay log."""

    type: str
    tp: str
    offset: int
    data: bytes
    section_id: str
    country: str
    severity: str | None
    changed_kinds: frozenset[str] = field(default_factory=frozenset)


class Subscriber:
    def __init__(self, maxsize: int, filter_: Filter) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=maxsize)
        self.filter = filter_
        self.too_slow = False


class Hub:
    """The replay log and the live fan-out of one API process."""

    def __init__(self, queue_size: int = 1000, replay_size: int = 10_000) -> None:
        self._subscribers: set[Subscriber] = set()
        self._queue_size = queue_size
        self.log: deque[Entry] = deque(maxlen=replay_size)
        self.position: dict[str, int] = {}
        # The offset of the oldest message each partition still has in the log.
        self._evicted: dict[str, int] = {}

    def publish(
        self,
        kind: str,
        payload: dict[str, Any],
        partition: int,
        offset: int,
        *,
        country: str = "",
        severity: str | None = None,
        changed_kinds: Iterable[str] = (),
    ) -> None:
        tp = f"{TOPIC_CODES[kind]}{partition}"
        self.position[tp] = offset + 1
        data = orjson.dumps(
            {"type": kind, "payload": payload, "cursor": encode_cursor(self.position)}
        )
        entry = Entry(
            kind,
            tp,
            offset,
            data,
            str(payload.get("section_id", "")),
            country,
            severity,
            frozenset(changed_kinds),
        )
        if len(self.log) == self.log.maxlen:
            old = self.log[0]
            self._evicted[old.tp] = max(self._evicted.get(old.tp, -1), old.offset)
        self.log.append(entry)
        for sub in list(self._subscribers):
            if not sub.filter.accepts(entry):
                continue
            try:
                sub.queue.put_nowait(data)
            except asyncio.QueueFull:
                self._drop(sub)
        FEED_SENT.labels(kind).inc()

    def _drop(self, sub: Subscriber) -> None:
        sub.too_slow = True
        self.unsubscribe(sub)
        FEED_DROPPED.inc()
        FEED_DROPPED_MESSAGES.inc(sub.queue.qsize())
        # Make room for the wake-up that tells the writer to close the socket.
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def subscribe(
        self, filter_: Filter, cursor: dict[str, int] | None
    ) -> tuple[Subscriber, list[bytes] | None]:
        """Register a client and return what it missed since ``cursor``.

        Returns ``None`` for the backlog when the cursor is older than the replay
        log (the caller sends a ``resync`` snapshot). Runs without awaiting, so no
        message can fall between the backlog and the live queue.
        """
        sub = Subscriber(self._queue_size, filter_)
        backlog: list[bytes] | None = []
        if cursor is not None:
            backlog = self.replay(filter_, cursor)
        self._subscribers.add(sub)
        FEED_CLIENTS.set(len(self._subscribers))
        return sub, backlog

    def replay(self, filter_: Filter, cursor: dict[str, int]) -> list[bytes] | None:
        for tp, evicted in self._evicted.items():
            if cursor.get(tp, 0) <= evicted:
                FEED_RESYNCS.inc()
                return None
        return [e.data for e in self.log if e.offset >= cursor.get(e.tp, 0) and filter_.accepts(e)]

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        FEED_CLIENTS.set(len(self._subscribers))

    def close_all(self) -> None:
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self._subscribers.clear()
        FEED_CLIENTS.set(0)
