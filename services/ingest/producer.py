"""Produce to Kafka and wait for the ack, within a deadline; keep the producer alive.

Field events are grouped by section: one record carries the events of one
section that arrived together (at most ``record_max_events`` and
``record_max_bytes``), keyed by ``section_id`` and stamped with the newest
``observed_at``.

:class:`KafkaGate` owns the aiokafka producer (``acks=all``, idempotent, from
``services.common.kafka.make_producer``). It starts it in the background,
retrying while the broker is away, and replaces it if its sender task dies, so
ingest recovers by itself. :meth:`KafkaGate.publish` returns only when Kafka
acknowledged every record, or raises :class:`BrokerUnavailable` at the deadline.
Records already handed to the client library when the deadline passes may
still be delivered later; their ids stay "in flight" until their fate is
known (see ``services.ingest.dedupe``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Histogram
from pydantic import TypeAdapter

from schemas.models import FieldEvent
from services.common.headers import received_header
from services.ingest.errors import BrokerUnavailable

__all__ = ["BrokerUnavailable", "KafkaGate", "Outgoing", "batch_records", "section_records"]

log = logging.getLogger(__name__)

PRODUCE_SECONDS = Histogram(
    "bw_ingest_produce_seconds",
    "Time until Kafka acknowledged a request's records",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_EVENT_LIST: TypeAdapter[list[FieldEvent]] = TypeAdapter(list[FieldEvent])


@dataclass(frozen=True)
class Outgoing:
    """One Kafka record and the idempotency keys of what it carries."""

    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int
    ids: tuple[str, ...]
    # When the request carrying it arrived (Unix s); sent as the bw-received-ms
    # header so the aggregator can measure ingest -> state published. None: now.
    received_at: float | None = None


@dataclass(frozen=True)
class SectionRecord:
    section_id: str
    value: bytes
    timestamp_ms: int
    positions: Sequence[int]  # of its events, in the list given to section_records


def _encode(section_id: str, events: list[FieldEvent]) -> bytes:
    # pydantic-core serialises the whole list in one call (~2x faster than
    # model_dump per event + orjson); the envelope is FieldEventBatch.
    return b"".join(
        (
            b'{"schema_version":1,"section_id":',
            orjson.dumps(section_id),
            b',"events":',
            _EVENT_LIST.dump_json(events, exclude_none=True),
            b"}",
        )
    )


def _split(
    section_id: str, events: Sequence[FieldEvent], positions: list[int], max_bytes: int
) -> list[tuple[list[int], bytes]]:
    value = _encode(section_id, [events[i] for i in positions])
    if len(value) <= max_bytes or len(positions) == 1:
        return [(positions, value)]
    half = len(positions) // 2
    return _split(section_id, events, positions[:half], max_bytes) + _split(
        section_id, events, positions[half:], max_bytes
    )


def section_records(
    events: Sequence[FieldEvent], record_max_events: int, record_max_bytes: int = 900_000
) -> list[SectionRecord]:
    """The records of ``events``: grouped by section, bounded in events and bytes, each
    stamped with its newest ``observed_at``."""
    by_section: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        positions = by_section.get(event.section_id)
        if positions is None:
            by_section[event.section_id] = [i]
        else:
            positions.append(i)
    records = []
    for section_id, positions in by_section.items():
        for start in range(0, len(positions), record_max_events):
            chunk = positions[start : start + record_max_events]
            for part, value in _split(section_id, events, chunk, record_max_bytes):
                if len(part) == 1:  # a single event (most requests): no max() to run
                    newest = events[part[0]].observed_at
                else:
                    newest = max(events[i].observed_at for i in part)
                ms = int(newest.timestamp() * 1000)
                records.append(SectionRecord(section_id, value, ms, part))
    return records


def batch_records(
    events: Sequence[FieldEvent], record_max_events: int, record_max_bytes: int = 900_000
) -> list[tuple[str, bytes, int]]:
    """(section_id, record value, timestamp ms) per record (see :func:`section_records`)."""
    return [
        (r.section_id, r.value, r.timestamp_ms)
        for r in section_records(events, record_max_events, record_max_bytes)
    ]


Settle = Callable[[Sequence[str], bool], None]


class KafkaGate:
    """The one producer of an ingest process, kept alive, with deadline-bounded publish."""

    def __init__(
        self,
        factory: Callable[[], AIOKafkaProducer],
        *,
        settle: Settle,
        late_ack_seconds: float = 60.0,
        start_timeout: float = 10.0,
    ) -> None:
        self._factory = factory
        self._settle = settle
        self._late_ack_seconds = late_ack_seconds
        self._start_timeout = start_timeout
        self._producer: AIOKafkaProducer | None = None
        # The loop the producer lives in (set with it): asyncio.get_running_loop()
        # costs a getpid() system call on every call on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._late: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self.restarts = 0

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def wait_ready(self) -> None:
        await self._connected.wait()

    # --- lifecycle ------------------------------------------------------------

    async def keep_alive(self, check_every: float = 0.5) -> None:
        """Start the producer (retrying while the broker is away) and replace it if its
        sender dies. Runs until cancelled."""
        delay = 0.2
        started = time.monotonic()
        while True:
            if self._producer is None:
                producer = self._factory()
                try:
                    await asyncio.wait_for(producer.start(), timeout=self._start_timeout)
                except (KafkaError, OSError, TimeoutError) as exc:
                    log.warning("broker not reachable (%r); retrying in %.1fs", exc, delay)
                    await _close(producer)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                self._producer = producer
                self._loop = asyncio.get_running_loop()
                self._connected.set()
                delay = 0.2
                log.info("producer connected after %.1fs", time.monotonic() - started)
            elif _sender_died(self._producer):
                log.error("the Kafka producer's sender stopped; replacing the producer")
                old, self._producer = self._producer, None
                self._connected.clear()
                self.restarts += 1
                started = time.monotonic()
                await _close(old)
                continue
            await asyncio.sleep(check_every)

    async def stop(self) -> None:
        for task in list(self._late):
            task.cancel()
        producer, self._producer = self._producer, None
        self._connected.clear()
        if producer is not None:
            await _close(producer)

    # --- producing ------------------------------------------------------------

    async def send(self, topic: str, key: bytes, value: bytes, timestamp_ms: int) -> Any:
        """Hand one record to the client library; returns its delivery future."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to Kafka yet")
        return await producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)

    async def publish(self, records: Sequence[Outgoing], deadline: float) -> float:
        """Produce ``records`` and wait until Kafka acknowledged all of them; returns seconds.

        ``deadline`` is in ``loop.time()``. Takes charge of every record's ids: they
        are settled acknowledged or not (now, or when a late delivery is known).
        Raises BrokerUnavailable when that does not happen before the deadline.
        """
        started = time.perf_counter()
        if not records:
            return 0.0
        producer = self._producer
        if producer is None:
            self._settle([i for r in records for i in r.ids], False)
            raise BrokerUnavailable("not connected to Kafka yet")
        sent: list[tuple[Outgoing, asyncio.Future[Any]]] = []
        error: BaseException | None = None
        now = time.time()
        loop = self._loop or asyncio.get_running_loop()
        expiry = _Expiry(loop, deadline)
        try:
            for record in records:
                received = now if record.received_at is None else record.received_at
                future = await producer.send(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    timestamp_ms=record.timestamp_ms,
                    headers=[received_header(received)],
                )
                sent.append((record, future))
            await _all_done(loop, [f for _, f in sent])
        except asyncio.CancelledError as exc:
            error = TimeoutError("the deadline passed") if expiry.expired() else exc
        except (TimeoutError, KafkaError) as exc:
            error = exc
        finally:
            expiry.disarm()
        if error is None and _all_acked(sent):
            # Every record handed over and acknowledged (the usual case).
            for record in records:
                self._settle(record.ids, True)
            took = time.perf_counter() - started
            PRODUCE_SECONDS.observe(took)
            return took
        failed = self._account(records, sent)
        if isinstance(error, asyncio.CancelledError):
            raise error
        reason = error if error is not None else failed[0]
        log.warning("produce of %d records failed: %r", len(records), reason)
        raise BrokerUnavailable(f"the broker did not acknowledge: {reason!r}") from error

    def _account(
        self, records: Sequence[Outgoing], sent: list[tuple[Outgoing, asyncio.Future[Any]]]
    ) -> list[BaseException]:
        """Settle what is known; watch what is still in flight. Returns the failures."""
        failed: list[BaseException] = []
        pending: list[tuple[Outgoing, asyncio.Future[Any]]] = []
        for record, future in sent:
            if not future.done():
                pending.append((record, future))
            elif future.cancelled() or future.exception() is not None:
                failed.append(
                    asyncio.CancelledError() if future.cancelled() else future.exception()  # type: ignore[arg-type]
                )
                self._settle(record.ids, False)
            else:
                self._settle(record.ids, True)
        handed = {id(r) for r, _ in sent}
        never_sent = [i for r in records if id(r) not in handed for i in r.ids]
        if never_sent:
            self._settle(never_sent, False)
        if pending:
            task = asyncio.get_running_loop().create_task(self._watch_late(pending))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            failed.append(TimeoutError("no ack before the deadline"))
        return failed

    async def _watch_late(self, pending: list[tuple[Outgoing, asyncio.Future[Any]]]) -> None:
        """Settle records whose delivery was still open at the deadline, once known."""
        futures = {future: record for record, future in pending}
        try:
            done, still = await asyncio.wait(futures, timeout=self._late_ack_seconds)
        except asyncio.CancelledError:
            done, still = set(), set(futures)
        for future in done:
            ok = not future.cancelled() and future.exception() is None
            self._settle(futures[future].ids, ok)
        for future in still:
            self._settle(futures[future].ids, False)
        if done:
            acked = sum(1 for f in done if not f.cancelled() and f.exception() is None)
            log.info("late delivery: %d of %d records acknowledged after a 503", acked, len(done))


class _Expiry:
    """``asyncio.timeout_at(when)`` for the task that makes it, reduced to what
    :meth:`KafkaGate.publish` needs: at ``when`` the task is cancelled, and
    :meth:`expired` tells that cancellation (uncancelled: a TimeoutError, then)
    from anyone else's. Python 3.11's Timeout costs ~3 us and two getpid() system
    calls per request in its pure-Python enter, reschedule and exit."""

    __slots__ = ("_cancelling", "_fired", "_handle", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline needs a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def expired(self) -> bool:
        """Whether the CancelledError being handled is this deadline's (as Timeout's
        exit decides it: only when nobody else asked for a cancellation too)."""
        return self._fired and self._task.uncancel() <= self._cancelling

    def disarm(self) -> None:
        self._handle.cancel()


def _all_done(
    loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[Any]]
) -> asyncio.Future[None]:
    """A future that resolves once every one of ``futures`` is done. Cancelling it (at
    the deadline) leaves them alone, so a late ack is still seen; as ``asyncio.wait``,
    with one callback per future and no sets to build."""
    waiter: asyncio.Future[None] = loop.create_future()
    left = len(futures)

    def arrived(_: asyncio.Future[Any]) -> None:
        nonlocal left
        left -= 1
        if left <= 0 and not waiter.done():
            waiter.set_result(None)

    for future in futures:
        future.add_done_callback(arrived)
    if not futures:
        waiter.set_result(None)
    return waiter


def _all_acked(sent: list[tuple[Outgoing, asyncio.Future[Any]]]) -> bool:
    return all(f.done() and not f.cancelled() and f.exception() is None for _, f in sent)


def _sender_died(producer: AIOKafkaProducer) -> bool:
    # aiokafka fails every batch and stops sending once its sender task ends with
    # an error (e.g. OutOfOrderSequenceNumber); the producer is then useless.
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return task is not None and task.done()


async def _close(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=5.0)
    except Exception:
        log.debug("producer stop failed", exc_info=True)
