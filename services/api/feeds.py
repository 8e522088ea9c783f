"""Live feeds: cursors, replay after a reconnect, filters and fan-out.

Every feed message is ``{"type", "payload", "cursor"}``. The cursor is the
vector of Kafka offsets the API has applied when it sent the message, one per
topic-partition (``s3-120_a0-7_k0-2``: section-state p3 up to offset 120,
alerts p0 up to 7, acks p0 up to 2). A client that reconnects with its last
cursor gets exactly the messages it missed, in order, from a bounded replay
log; if the log no longer reaches back that far, it gets one ``resync``
message with the full snapshot instead, and goes on live from there.

On the WebSocket feeds every frame is a batch: ``{"type": "batch", "messages":
[...]}`` holds every message a client had not had yet when its writer woke, in
order, each with its own cursor. One frame per wake-up instead of one per
message is what lets one process serve a thousand clients: the cost of a frame
(ASGI, framing, a syscall) is paid once per batch, and the batch's bytes are
built once for all the clients that share a filter and a place in the log.

Each message is encoded once, into the replay log, which every writer reads
from its own place; there is no queue per client. Publishing never waits for a
client: a client whose writer has been held in one send by TCP flow control for
``STALL_SECONDS`` while it is more than ``queue_size`` messages behind, or that
falls out of the log, is dropped and its
socket closed with code 4008 (too slow: reconnect with your cursor), so one
slow reader never delays the others nor grows memory. Dropped clients are
counted.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from schemas.models import SEVERITY_ORDER

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008
# A writer held this long in one send (TCP flow control: the client reads nothing)
# while it is too far behind is dropped. Shorter holds are a client catching up.
STALL_SECONDS = 1.0

FEED_CLIENTS = Gauge("bw_api_feed_clients", "Connected feed clients")
FEED_SENT = Counter(
    "bw_api_feed_messages_total",
    "Messages published to the feeds (each goes to every client whose filter passes it)",
    ["type"],
)
FEED_FRAMES = Counter("bw_api_feed_frames_total", "WebSocket feed frames (batches) sent")
FEED_DROPPED = Counter(
    "bw_api_feed_clients_dropped_total", "Clients dropped because their queue was full"
)
FEED_DROPPED_MESSAGES = Counter(
    "bw_api_feed_messages_dropped_total", "Messages not delivered to clients that were too slow"
)
FEED_RESYNCS = Counter("bw_api_feed_resyncs_total", "Reconnects beyond the replay horizon")

# A frame holds at most about this many bytes of messages (a bigger message goes alone).
# A 50 ms flush at 200 updates/s is ~40 KB; a writer held by a slow client keeps one
# frame in its transport buffer, so the bound is also memory per lagging client.
MAX_FRAME_BYTES = 64 * 1024
FRAME_HEAD = b'{"type":"batch","messages":['
FRAME_TAIL = b"]}"

# Short names of the topics in a cursor.
TOPIC_CODES = {
    "section_state": "s",
    "alert": "a",
    "ack": "k",
    "analysis": "r",
    "assessment": "m",
}


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def dumps(value: Any) -> bytes:
    """Compact JSON with every non-ASCII character escaped (``\\u017a``).

    The same JSON to any parser, but a frame built from it is an ASCII ``str``,
    which the server encodes to bytes once per client at memory speed; one
    section name with a diacritic otherwise makes the whole frame a wide string,
    and encoding it cost more than everything else in a send (profiled)."""
    data = orjson.dumps(value)
    if data.isascii():
        return data
    return _NON_ASCII.sub(_json_escape, data.decode()).encode()


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
        if not sep or not tp or not off.isdigit() or tp[0] not in "sakrm" or not tp[1:].isdigit():
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
    # Section states with their 24 hourly buckets (``hourly=true``); without, a
    # state is a sixth of the bytes, which is most of the cost of a feed.
    hourly: bool = False
    # The countries of a country-scoped token (``token create --countries``); empty:
    # every country. Unlike ``countries`` (what the client asked for) the client
    # cannot widen it, and a message of no known country (an ack of an alert the
    # view has not seen) never passes it.
    scope: frozenset[str] = frozenset()

    def data(self, entry: Entry) -> bytes:
        """The entry's message as this client gets it."""
        return entry.data if self.hourly else entry.slim

    @property
    def plain(self) -> bool:
        """Only message types select: the filter of most clients, checked fastest."""
        return not (
            self.sections or self.countries or self.kinds or self.min_severity or self.scope
        )

    def accepts(self, entry: Entry) -> bool:
        if entry.type not in self.types:
            return False
        if self.sections and not any(
            fnmatch.fnmatchcase(entry.section_id, p) for p in self.sections
        ):
            return False
        if self.countries and entry.country not in self.countries:
            return False
        if self.scope and entry.country not in self.scope:
            return False
        if self.min_severity and entry.severity is not None:
            if SEVERITY_ORDER[entry.severity] < SEVERITY_ORDER[self.min_severity]:
                return False
        if self.kinds and entry.type == "section_state":
            if not set(self.kinds) & entry.changed_kinds:
                return False
        return True


@dataclass(slots=True)
class Entry:
    """One message in the replay log, encoded once and shared by every client."""

    type: str
    tp: str
    offset: int
    data: bytes
    # ``data`` without a section state's ``hourly`` series (the same bytes otherwise)
    slim: bytes
    cursor: str
    section_id: str
    country: str
    severity: str | None
    changed_kinds: frozenset[str] = field(default_factory=frozenset)


def batch_frame(messages: list[bytes]) -> str:
    """One WebSocket frame: ``{"type": "batch", "messages": [...]}`` around messages
    that are already JSON, in order."""
    return (FRAME_HEAD + b",".join(messages) + FRAME_TAIL).decode()


def frames(messages: Iterable[bytes], max_bytes: int = MAX_FRAME_BYTES) -> Iterator[str]:
    """``messages`` in as few frames as fit ``max_bytes`` each (a bigger message
    still goes, alone)."""
    chunk: list[bytes] = []
    size = 0
    for data in messages:
        if chunk and size + len(data) > max_bytes:
            yield batch_frame(chunk)
            chunk, size = [], 0
        chunk.append(data)
        size += len(data) + 1
    if chunk:
        yield batch_frame(chunk)


class Subscriber:
    """One client: its filter and its place in the hub's log. It has no queue of its
    own; its writer reads the shared log from ``next_seq`` on."""

    __slots__ = (
        "_waiter",
        "closed",
        "filter",
        "heartbeat_due",
        "last_sent",
        "next_seq",
        "send_started",
        "sending",
        "too_slow",
    )

    def __init__(self, filter_: Filter, next_seq: int, now: float) -> None:
        self.filter = filter_
        self.next_seq = next_seq
        self.too_slow = False
        # The client went away, or the server is stopping.
        self.closed = False
        # The writer is inside a send (maybe held by TCP flow control), since when.
        self.sending = False
        self.send_started = now
        self.heartbeat_due = False
        self.last_sent = now
        self._waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        return self.too_slow or self.closed

    @property
    def waiting(self) -> bool:
        return self._waiter is not None

    async def wait(self) -> None:
        """Until the hub has something new for writers, a heartbeat is due, or this
        subscriber is dropped or closed."""
        if self.done:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        self.wake()


class Hub:
    """The replay log and the live fan-out of one API process.

    Publishing appends to the log and never touches a client. Writers are woken
    once per *flush* (at most every ``flush_seconds``, at once after a burst of
    a quarter of the client limit) and each sends everything it has not had yet
    that passes its filter, in one frame. Clients with the same filter at the
    same place in the log share one built frame.
    """

    def __init__(
        self,
        queue_size: int = 1000,
        replay_size: int = 10_000,
        *,
        flush_seconds: float = 0.0,
        heartbeat_seconds: float = 15.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._subscribers: set[Subscriber] = set()
        # A client whose writer is held in a send while it is further behind than this
        # is dropped; the log must still hold what it has not had.
        self.limit = min(queue_size, replay_size)
        self.replay_size = replay_size
        self.flush_seconds = flush_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.max_frame_bytes = max_frame_bytes
        # Entries [_base, head) by sequence number; the replay window is the last
        # ``replay_size`` of them (older ones are cut off now and then, not one by one).
        self._entries: list[Entry] = []
        self._base = 0
        self.head = 0
        # Writers see entries before this one: the head at the last flush.
        self._visible = 0
        self.position: dict[str, int] = {}
        # The offset of the newest message each partition no longer has in the log.
        self._evicted: dict[str, int] = {}
        # Built frames of this flush, by (filter, first sequence number): (frame, next).
        self._frames: dict[tuple[Filter, int], tuple[str | None, int]] = {}
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._flush_now = False
        self._last_flush = -math.inf
        self._heartbeat_handle: asyncio.TimerHandle | None = None

    @property
    def oldest(self) -> int:
        """Sequence number of the oldest message still in the replay window."""
        return max(0, self.head - self.replay_size)

    @property
    def log(self) -> list[Entry]:
        """The replay window, oldest first."""
        return self._entries[self.oldest - self._base :]

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
        cursor = encode_cursor(self.position)
        data = dumps({"type": kind, "payload": payload, "cursor": cursor})
        slim = data
        if "hourly" in payload:
            brief = {k: v for k, v in payload.items() if k != "hourly"}
            slim = dumps({"type": kind, "payload": brief, "cursor": cursor})
        self._entries.append(
            Entry(
                kind,
                tp,
                offset,
                data,
                slim,
                cursor,
                str(payload.get("section_id", "")),
                country,
                severity,
                frozenset(changed_kinds),
            )
        )
        self.head += 1
        if self.head > self.replay_size:
            old = self._entries[self.oldest - 1 - self._base]
            self._evicted[old.tp] = max(self._evicted.get(old.tp, -1), old.offset)
            if self.oldest - self._base >= self.replay_size:
                del self._entries[: self.oldest - self._base]
                self._base = self.oldest
        FEED_SENT.labels(kind).inc()
        self._schedule_flush()

    # --- waking the writers ------------------------------------------------------------

    def _schedule_flush(self) -> None:
        burst = self.head - self._visible >= max(1, self.limit // 4)
        if self._flush_handle is not None:
            if not burst or self._flush_now:
                return
            self._flush_handle.cancel()
        loop = asyncio.get_running_loop()
        delay = self._last_flush + self.flush_seconds - loop.time()
        if delay > 0 and not burst:
            self._flush_handle = loop.call_later(delay, self._flush)
            self._flush_now = False
        else:
            self._flush_handle = loop.call_soon(self._flush)
            self._flush_now = True

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        self._visible = self.head
        self._frames.clear()
        stalled = self._last_flush - STALL_SECONDS
        for sub in list(self._subscribers):
            if sub.waiting:
                sub.wake()
            elif (
                sub.sending and sub.send_started < stalled and self.head - sub.next_seq > self.limit
            ):
                # Held in one send by TCP flow control while the feed ran on: the
                # client does not read.
                self._drop(sub)

    def _heartbeat_tick(self) -> None:
        self._heartbeat_handle = None
        if not self._subscribers:
            return
        loop = asyncio.get_running_loop()
        idle_since = loop.time() - self.heartbeat_seconds
        for sub in self._subscribers:
            if sub.waiting and sub.last_sent <= idle_since:
                sub.heartbeat_due = True
                sub.wake()
        self._heartbeat_handle = loop.call_later(self.heartbeat_seconds / 4, self._heartbeat_tick)

    # --- what a writer sends -----------------------------------------------------------

    def next_frame(self, sub: Subscriber) -> str | None:
        """Everything ``sub`` has not had yet that passes its filter, up to the last
        flush, as one frame (split above ``max_frame_bytes``); None when there is
        nothing. Advances ``sub``."""
        while sub.next_seq < self._visible:
            if sub.next_seq < self.oldest:
                self._drop(sub)
                return None
            key = (sub.filter, sub.next_seq)
            built = self._frames.get(key)
            if built is None:
                built = self._frames[key] = self._build(sub.filter, sub.next_seq)
            frame, sub.next_seq = built
            if frame is not None:
                return frame
        return None

    def _build(self, filter_: Filter, start: int) -> tuple[str | None, int]:
        entries, base, end = self._entries, self._base, self._visible
        out: list[bytes] = []
        size = 0
        plain = filter_.plain
        hourly = filter_.hourly
        for i in range(start - base, end - base):
            entry = entries[i]
            if entry.type in filter_.types if plain else filter_.accepts(entry):
                data = entry.data if hourly else entry.slim
                out.append(data)
                size += len(data) + 1
                if size >= self.max_frame_bytes:
                    return batch_frame(out), base + i + 1
        return (batch_frame(out) if out else None), end

    def next_entries(self, sub: Subscriber) -> list[Entry]:
        """Like ``next_frame``, as separate entries (for Server-Sent Events)."""
        start = sub.next_seq
        if start >= self._visible:
            return []
        if start < self.oldest:
            self._drop(sub)
            return []
        sub.next_seq = self._visible
        return [
            e
            for e in self._entries[start - self._base : self._visible - self._base]
            if sub.filter.accepts(e)
        ]

    def caught_up(self, sub: Subscriber) -> bool:
        """Whether ``sub`` has had every message published so far: then the hub's
        position is its cursor (a heartbeat may carry it)."""
        return sub.next_seq >= self.head

    # --- clients -----------------------------------------------------------------------

    def _drop(self, sub: Subscriber) -> None:
        if sub.too_slow:
            return
        sub.too_slow = True
        self.unsubscribe(sub)
        FEED_DROPPED.inc()
        start = max(sub.next_seq, self._base)
        FEED_DROPPED_MESSAGES.inc(
            sum(
                1
                for e in self._entries[start - self._base : self.head - self._base]
                if sub.filter.accepts(e)
            )
        )
        sub.wake()

    def subscribe(
        self, filter_: Filter, cursor: dict[str, int] | None
    ) -> tuple[Subscriber, list[Entry] | None]:
        """Register a client and return what it missed since ``cursor``.

        Returns ``None`` for the backlog when the cursor is older than the replay
        log (the caller sends a ``resync`` snapshot). Runs without awaiting, so no
        message can fall between the backlog and the live feed.
        """
        loop = asyncio.get_running_loop()
        sub = Subscriber(filter_, self.head, loop.time())
        backlog: list[Entry] | None = []
        if cursor is not None:
            backlog = self.replay(filter_, cursor)
        self._subscribers.add(sub)
        FEED_CLIENTS.set(len(self._subscribers))
        if self._heartbeat_handle is None:
            self._heartbeat_handle = loop.call_later(
                self.heartbeat_seconds / 4, self._heartbeat_tick
            )
        return sub, backlog

    def replay(self, filter_: Filter, cursor: dict[str, int]) -> list[Entry] | None:
        for tp, evicted in self._evicted.items():
            if cursor.get(tp, 0) <= evicted:
                FEED_RESYNCS.inc()
                return None
        return [e for e in self.log if e.offset >= cursor.get(e.tp, 0) and filter_.accepts(e)]

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        FEED_CLIENTS.set(len(self._subscribers))

    def close_all(self) -> None:
        for sub in list(self._subscribers):
            sub.close()
        self._subscribers.clear()
        FEED_CLIENTS.set(0)
        for handle in (self._flush_handle, self._heartbeat_handle):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._heartbeat_handle = None
