"""Faust glue of the aggregator: decode, call the engine, write the table and topics.

The input record value is a :class:`schemas.models.FieldEventBatch` (the
events of one section that arrived together), keyed by ``section_id``. Records
are handled in batches (taken in bulk, see bulk.py); each touched section is loaded from
the table, updated, written back once and published once per batch.

A wall-clock timer moves quiet sections' windows on, so their rolling counts
fall and their alerts resolve without any new event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import Any, cast

import faust
import orjson
from faust.tables.table import Table
from faust.types import TP
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest

from schemas.models import SEVERITY_ORDER
from services.aggregator import metrics as domain_metrics
from services.aggregator import stall, windows
from services.aggregator.app import app, input_sink, settings, topics
from services.aggregator.changelog import ChangelogWriter
from services.aggregator.cursor import Decision, InputCursors
from services.aggregator.publisher import Publisher, PublisherFailed
from services.aggregator.rules import load_rules
from services.aggregator.state import (
    BatchOutcome,
    Engine,
    Publication,
    SectionAggregate,
    checkpoint_key,
    checkpoint_partition,
    hour_records,
    is_core_key,
    partition_key,
)
from services.common import gctune
from services.common.catalogue import Catalogue
from services.common.headers import received_at, version_header
from services.common.kafka import partition_for

log = logging.getLogger(__name__)

EVENTS_COUNTED = Counter(
    "bw_aggregator_events_counted_total", "Field events counted into windows", ["kind"]
)
EVENTS_REPLAYED = Counter(
    "bw_aggregator_events_replay_skipped_total",
    "Events skipped because the section state already reflects their offset",
)
EVENTS_DUPLICATE = Counter(
    "bw_aggregator_duplicate_events_total", "Events not counted again (same event_id)"
)
EVENTS_LATE = Counter("bw_aggregator_late_events_total", "Events later than the grace period")
RECORDS_BAD = Counter("bw_aggregator_bad_records_total", "Input records that could not be decoded")
ALERTS_RAISED = Counter(
    "bw_aggregator_alert_transitions_total",
    "Alert transitions published",
    ["rule", "status", "severity"],
)
STATES_PUBLISHED = Counter("bw_aggregator_states_published_total", "Section states published")
INPUT_REWINDS = Counter(
    "bw_aggregator_input_rewinds_total",
    "Times input records were skipped by the consumer and the worker sought back to them",
)
RECORDS_EXPIRED = Counter(
    "bw_aggregator_input_records_expired_total",
    "Input records deleted by retention before they were counted",
)
TICK_SECONDS = Histogram(
    "bw_aggregator_tick_seconds",
    "Longest time a wall-clock tick held the worker at once (input waits meanwhile)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SECTIONS = Gauge("bw_aggregator_sections_active", "Sections held by this worker")
CHANGELOG_BYTES = Counter(
    "bw_aggregator_changelog_bytes",
    "Bytes (keys and values) written to the section table's changelog",
)
VALUES_TOO_LARGE = Counter(
    "bw_aggregator_values_too_large",
    "Section updates not written because a record would pass the broker's record limit",
)
PUBLISH_QUEUE = Gauge(
    "bw_aggregator_publish_queue",
    "Section outboxes written to the table and waiting to be sent",
)
# Sections a wall-clock tick refreshes per turn; input records wait at most that long.
TICK_CHUNK = 16
# How long a rebalance waits for queued outboxes to be sent before moving sections.
REVOKE_DRAIN_SECONDS = 10.0

catalogue = Catalogue.load(settings.sections_file)
rules = load_rules(settings.rules_file)
engine = Engine(
    catalogue,
    rules,
    bucket_seconds=settings.bucket_seconds,
    grace_seconds=settings.grace_seconds,
)

raw: Any = faust.Schema(
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
field_events = app.topic(topics.field_events, schema=raw, partitions=settings.field_partitions)


class SectionTable(Table[bytes, bytes]):
    """A table whose every key sits on its section's partition.

    A section's core is keyed by the raw section id, as on the input topic, and
    its dedupe segments by ``{section}|{bucket}|{n}`` (state.py). Both are sent
    to the partition Kafka's partitioner picks for the section id, so a section's
    records keep their order in one changelog partition, and a rebalance moves
    them with the section's input partition.
    """

    def partition_for_key(self, key: Any) -> int | None:
        partition = checkpoint_partition(key)
        if partition is not None:
            return partition
        return partition_for(partition_key(key), settings.field_partitions)


# Note: passing ``schema=`` to the Table (faust-streaming 0.15.3) silently
# stops delivery to every agent of the worker; key/value types plus the app's
# raw serializers work (see tests/integration).
sections_table: Any = app.tables.add(
    SectionTable(
        app,
        name="section-aggregates",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.field_partitions,
        use_partitioner=True,
        beacon=app.tables.beacon,
        # Roll and compact the changelog often: a restore reads what compaction left
        # (the last value of each key) plus the writes since the last roll.
        extra_topic_configs={
            "segment.ms": str(10 * 60 * 1000),
            "min.cleanable.dirty.ratio": "0.2",
        },
    )
)
# Every write to the table goes through it (changelog.py); the app's aiokafka
# producer exists once the worker has started.
changelog = ChangelogWriter(sections_table, lambda: _kafka())
# Kafka's default record limit is 1 MiB (message.max.bytes, max_request_size); a
# value near it would fail the producer and stop the worker.
MAX_VALUE_BYTES = 900_000

# Decoded aggregates of the sections this worker counts, so a batch does not
# decode each section's value again; dropped whenever partitions move, when the
# table may be rebuilt from its changelog.
_cache: dict[bytes, SectionAggregate] = {}
# Outboxes found in restored aggregates: sent again before anything new.
_resend: dict[bytes, dict[str, Any]] = {}
# The next input offset to count per partition, derived from the aggregates
# after each assignment (see cursor.py); forgotten whenever partitions move.
_cursors = InputCursors()


# Segment keys per section, read from the table once per assignment (a restore
# has just rebuilt it), so loading a section does not scan every key.
_segment_index: dict[bytes, list[bytes]] | None = None


def _segments_of(key: bytes) -> list[tuple[bytes, bytes]]:
    global _segment_index
    if _segment_index is None:
        _segment_index = {}
        for k in list(sections_table.keys()):
            if b"|" in k:  # a dedupe segment (not a core, not a checkpoint)
                _segment_index.setdefault(partition_key(k), []).append(k)
    data = sections_table.data
    return [(k, data[k]) for k in _segment_index.pop(key, []) if data.get(k) is not None]


def _load(key: bytes) -> SectionAggregate:
    agg = _cache.get(key)
    if agg is not None:
        return agg
    agg = SectionAggregate.restore(key.decode(), sections_table.get(key), _segments_of(key))
    if agg.outbox:
        _resend[key] = agg.outbox
    _cache[key] = agg
    return agg


def _store(key: bytes, agg: SectionAggregate, pub: Publication) -> bool:
    """Write the section's update, its publication (if any) as the outbox, before
    sending it. False if a record would be too large: then nothing is written and
    nothing published, and the worker carries on with the other sections."""
    if pub:
        agg.outbox = pub.to_outbox()
        agg.outbox_sent = False
    writes = agg.writes()
    largest = max(len(v) for _, v in writes if v is not None)
    if largest > MAX_VALUE_BYTES:
        VALUES_TOO_LARGE.inc()
        log.error(
            "section %s: a table record of %d bytes would pass the %d-byte limit; its "
            "update is not written or published (the other sections go on)",
            agg.section_id,
            largest,
            MAX_VALUE_BYTES,
        )
        return False
    written = 0
    for k, v in writes:
        if v is None:
            if changelog.delete(k):
                written += len(k)
        else:
            changelog.set(k, v)
            written += len(k) + len(v)
    CHANGELOG_BYTES.inc(written)
    _cache[key] = agg
    return True


def _kafka() -> Any:
    """The app's aiokafka producer (started with the worker)."""
    return cast(Any, app.producer)._ensure_producer()


async def _send_outbox(key: bytes, outbox: dict[str, Any]) -> None:
    # Straight to aiokafka, as the table writes (changelog.py): the same producer
    # and partitioner as Faust's Topic.send, without its per-message wrappers.
    producer = _kafka()
    for alert in outbox["alerts"]:
        await producer.send(topics.alerts, orjson.dumps(alert), key=alert["alert_id"].encode())
        ALERTS_RAISED.labels(alert["rule"], alert["status"], alert["severity"]).inc()
        log.info(
            "alert %s seq=%s %s: %s",
            alert["alert_id"],
            alert["seq"],
            alert["status"],
            alert["summary"],
        )
    for hour_key, value, timestamp in hour_records(key.decode(), outbox):
        await producer.send(
            topics.section_hours, value, key=hour_key, timestamp_ms=int(timestamp * 1000)
        )
    state = outbox["state"]
    if state is not None:
        await producer.send(
            topics.section_state,
            orjson.dumps(state),
            key=key,
            headers=[version_header(state["version"])],
        )
        STATES_PUBLISHED.inc()
        publish_latency.published(key, state["version"])  # issue 12
    agg = _cache.get(key)
    if agg is not None and agg.outbox is outbox:
        agg.outbox_sent = True  # later writes of the core may leave it out


async def _flush_table() -> None:
    # Faust's flush sends what its producer holds (it waits for every record
    # queued through the table only because app.py installs
    # durable.DurableProducerBuffer); then every changelog write sent so far must
    # be acknowledged, or the publication that follows must not go out.
    await app.producer.flush()
    await changelog.durable()


publisher = Publisher(_flush_table, _send_outbox)
# Read at scrape time: set only when outboxes were queued, it went stale once sent.
PUBLISH_QUEUE.set_function(lambda: publisher.pending)


async def _publish(outboxes: list[tuple[bytes, dict[str, Any] | None]]) -> None:
    """Queue what restored aggregates still owed, then the new outboxes.

    The new ones were written to the table first; the publisher flushes the
    producer before it sends them, so a version or alert transition is never
    visible unless the aggregate that produced it is durable, and a worker
    taking over after a crash can never publish a different state under the
    same version. Callers hold ``_turn``, so versions are queued in order.
    """
    owed = list(_resend.items())
    _resend.clear()
    await publisher.put(owed + [(k, o) for k, o in outboxes if o])


@app.task  # type: ignore[untyped-decorator]
async def publish_outboxes() -> None:
    """Send the queued outboxes (see publisher.py); a failure stops the worker."""
    try:
        await publisher.run()
    except Exception as exc:
        if app.should_stop:
            # Stopping: the producer may stop before this task does (a tick can queue
            # outboxes after the revoke's drain). Nothing is lost: the outboxes are in
            # the table, and whoever restores those sections sends them.
            log.warning(
                "stopping with %d section outboxes unsent (%r); their sections' next "
                "owner sends them from the table",
                publisher.pending,
                exc,
            )
            return
        log.exception("publishing section states failed; stopping the worker")
        await app.crash(exc)
        raise


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _forget_on_revoke(sender: Any, revoked: Any, **kwargs: Any) -> None:
    # Send what is queued before the sections move: their new owner would send
    # the same outboxes again from the table.
    try:
        await asyncio.wait_for(publisher.drain(), timeout=REVOKE_DRAIN_SECONDS)
    except TimeoutError:
        log.warning(
            "partitions revoked with %d section outboxes unsent after %.0f s; their new "
            "owner sends them from the table",
            publisher.pending,
            REVOKE_DRAIN_SECONDS,
        )
    except PublisherFailed:
        pass  # already stopping the worker
    _forget()
    publish_latency.forget()  # issue 12


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def _forget_on_assign(sender: Any, assigned: Any, **kwargs: Any) -> None:
    _forget()


def _forget() -> None:
    global _segment_index
    _cache.clear()
    # Partitions moved: a pending checkpoint may no longer be ours to write (a
    # lagging checkpoint is safe, see _checkpoint).
    _pending_checkpoints.clear()
    _checkpoint_written.clear()
    # Held-back states of sections that may have moved: their owner publishes them
    # (its first refresh of each, or the tick).
    _held.clear()
    _last_state.clear()
    _segment_index = None
    _cursors.reset()


def _decode(message: Any) -> list[dict[str, Any]] | None:
    try:
        batch = orjson.loads(message.value)
        events = batch["events"]
        if not isinstance(events, list):
            raise TypeError("events is not a list")
        return events
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        RECORDS_BAD.inc()
        log.error(
            "undecodable record skipped: %s; topic=%s partition=%s offset=%s",
            exc,
            message.topic,
            message.partition,
            message.offset,
        )
        return None


# The agent and the timer both update sections; one at a time, so a section's
# publications reach Kafka in the order their versions were given.
_turn = asyncio.Lock()


async def handle(batch: Iterable[Any], now: float | None = None) -> None:
    """Count a batch of input records (Faust messages) and publish each touched
    section once."""
    async with _turn:
        await _handle(batch, time.time() if now is None else now)


async def _handle(batch: Iterable[Any], now: float) -> None:
    touched: dict[bytes, SectionAggregate] = {}
    done: dict[int, int] = {}  # input partition -> highest offset applied in this batch
    received: dict[bytes, list[float]] = {}  # issue 12: SLO histograms
    outcome = BatchOutcome()
    wall = time.time()
    for message in batch:
        if not await _in_sequence(message, wall):
            continue
        key = message.key
        events = _decode(message)
        if key is None or events is None:
            continue
        agg = touched.get(key)
        if agg is None:
            agg = touched[key] = _load(key)
        done[message.partition] = max(done.get(message.partition, -1), message.offset)
        # issue 12: a record the section already reflects (a replay) is not counted again
        fresh = message.offset > agg.offsets.get(message.partition, -1)
        engine.apply_record(agg, message.partition, message.offset, events, outcome, message.topic)
        if fresh:  # issue 12: one observation per counted record (timestamp: newest observed_at)
            EVENT_LAG.observe(max(0.0, now - message.timestamp))
            r = received_at(message.headers)
            if r is not None:
                received.setdefault(key, []).append(r)
    outboxes = []
    mono = time.monotonic()
    for key, agg in touched.items():
        hold = _hold_back(key, mono)
        pub = engine.refresh(agg, now, state=not hold)
        if not _store(key, agg, pub):
            # Not written: its partition's checkpoint must not pass its record.
            if agg.partition is not None:
                done.pop(agg.partition, None)
            continue
        if pub:
            outboxes.append((key, agg.outbox))
        if pub.state_doc is not None:  # issue 12: observed when this version is sent
            publish_latency.counted(key, pub.state_doc["version"], received.get(key, []))
            _state_sent(key, mono)
        elif hold:
            _held.setdefault(key, _last_state[key] + settings.state_publish_interval)
            publish_latency.counted(key, agg.version + 1, received.get(key, []))
    _checkpoint(done)
    await changelog.send()
    for kind, n in outcome.by_kind.items():
        EVENTS_COUNTED.labels(kind).inc(n)
    if outcome.duplicates:
        EVENTS_DUPLICATE.inc(outcome.duplicates)
    if outcome.skipped_replay:
        EVENTS_REPLAYED.inc(outcome.skipped_replay)
    if outcome.late:
        EVENTS_LATE.inc(outcome.late)
    await _publish(outboxes)


# BW_STATE_PUBLISH_INTERVAL: when each section's state last went out (monotonic
# seconds), and the sections whose state is held back, with when it is due.
_last_state: dict[bytes, float] = {}
_held: dict[bytes, float] = {}


def _hold_back(key: bytes, mono: float) -> bool:
    """Whether to hold this section's state back: it went out less than
    ``state_publish_interval`` ago (an alert transition still goes at once)."""
    interval = settings.state_publish_interval
    if interval <= 0:
        return False
    last = _last_state.get(key)
    return last is not None and mono - last < interval


def _state_sent(key: bytes, mono: float) -> None:
    if settings.state_publish_interval > 0:
        _last_state[key] = mono
        _held.pop(key, None)


async def publish_held() -> None:
    """Publish the held-back states that are due (one full refresh each: whatever
    changed since the last publication goes out as one state)."""
    if app.rebalancing or not _held:
        return
    async with _turn:
        if app.rebalancing:
            return
        mono, now = time.monotonic(), time.time()
        outboxes = []
        for key in [k for k, due in _held.items() if due <= mono]:
            del _held[key]
            agg = _load(key)
            pub = engine.refresh(agg, now)
            if pub and _store(key, agg, pub):
                outboxes.append((key, agg.outbox))
                if pub.state_doc is not None:
                    _state_sent(key, mono)
        await changelog.send()
        await _publish(outboxes)


if settings.state_publish_interval > 0:
    app.timer(interval=max(0.05, settings.state_publish_interval / 4))(publish_held)


def _start_cursor(partition: int, now: float = float("-inf")) -> int:
    """One past ``partition``'s checkpoint: the highest input offset whose batch was
    written whole. (Not the highest offset a section reflects: within a batch the
    sections are written one after another, so a crash can leave one section's
    later record written and another's earlier record not; the records between
    the checkpoint and that are replayed, and each section's offsets and ids skip
    what it has.) Tables written before checkpoints existed fall back to that."""
    stored = sections_table.get(checkpoint_key(partition))
    if stored is not None:
        last = int(stored)
    else:
        last = -1
        for key in list(sections_table.keys()):
            if is_core_key(key) and partition_for(key, settings.field_partitions) == partition:
                last = max(last, _load(key).offsets.get(partition, -1))
    _cursors.start(partition, last + 1, now)
    return last + 1


# Checkpoints not written yet (input partition -> offset), and when each partition's
# was last written (monotonic seconds); see _checkpoint.
_pending_checkpoints: dict[int, int] = {}
_checkpoint_written: dict[int, float] = {}


def _checkpoint(done: dict[int, int], force: bool = False) -> None:
    """After a batch's sections are written: each input partition's checkpoint, on
    that partition's changelog partition, so it is durable only after them.

    Written at most once per ``checkpoint_interval`` per partition (the newest
    offset wins; ``watch_input`` writes what is left each second). A checkpoint
    is where a successor resumes, and one that lags only makes it replay records
    every section already reflects (their offsets and ids skip them), so nothing
    is lost by writing it less often. Written after every batch, it was one more
    changelog record per batch and partition: at 200 single-event records/s live
    nearly one per event (bench.feeds)."""
    for partition, offset in done.items():
        if offset > _pending_checkpoints.get(partition, -1):
            _pending_checkpoints[partition] = offset
    if not _pending_checkpoints:
        return
    now = time.monotonic()
    interval = settings.checkpoint_interval
    for partition in list(_pending_checkpoints):
        if not force and now - _checkpoint_written.get(partition, -math.inf) < interval:
            continue
        offset = _pending_checkpoints.pop(partition)
        _checkpoint_written[partition] = now
        key = checkpoint_key(partition)
        stored = sections_table.get(key)
        if stored is None or int(stored) < offset:
            value = b"%d" % offset
            changelog.set(key, value)
            CHANGELOG_BYTES.inc(len(key) + len(value))


async def _in_sequence(message: Any, now: float) -> bool:
    """Whether to apply this input record; seeks back when records were skipped."""
    p, offset = message.partition, message.offset
    if not _cursors.knows(p):
        expected = _start_cursor(p)
        log.info(
            "counting %s partition %s: next record to count is %s, first delivered %s",
            message.topic,
            p,
            expected,
            offset,
        )
    decision = _cursors.decide(p, offset, now)
    if decision is Decision.REWIND:
        expected = _cursors.expected(p)
        tp = message.tp
        # Only when seeking back once did not bring it: asking is slow.
        retried = _cursors.rewinds(p) > 1
        earliest = (await app.consumer.earliest_offsets(tp)).get(tp, 0) if retried else 0
        if earliest > expected:
            log.warning(
                "%s partition %s: records %s..%s were deleted by retention before they "
                "were counted",
                message.topic,
                p,
                expected,
                earliest - 1,
            )
            RECORDS_EXPIRED.inc(earliest - expected)
            _cursors.start(p, earliest)
            return await _in_sequence(message, now)
        await _seek_back(tp, expected, f"record {offset} delivered")
    return decision in (Decision.COUNT, Decision.REPLAY)


async def _seek_back(tp: TP, expected: int, seen: str) -> None:
    log.warning(
        "%s partition %s: %s but %s is the next to count; seeking back to it",
        tp.topic,
        tp.partition,
        seen,
        expected,
    )
    INPUT_REWINDS.inc()
    await app.consumer.seek(tp, expected)


# No Faust agent iterates the input topic: its records come in bulk (bulk.py).
# Registered with the conductor, the topic is subscribed and its offsets acked.
app.topics.add(field_events)


@app.task  # type: ignore[untyped-decorator]
async def count_field_events() -> None:
    """Count the input records in batches, acking each once handled (as
    ``Stream.take_events`` did), so Faust's commits follow what was counted."""
    try:
        while True:
            batch = await input_sink.take(settings.batch_max, settings.batch_within)
            await handle(batch)
            ack = app.consumer.ack
            for message in batch:
                ack(message)
            await app.producer.buffer.wait_until_ebb()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("counting field events failed; stopping the worker")
        await app.crash(exc)
        raise


def _active_partitions() -> set[int]:
    return {
        tp.partition
        for tp in app.assignor.assigned_actives()
        if isinstance(tp, TP) and tp.topic == topics.field_events
    }


@app.timer(interval=settings.tick_seconds)  # type: ignore[untyped-decorator]
async def tick() -> None:
    """Move every section this worker owns on to the wall clock: rolling counts
    fall, alerts resolve, silent sections are noticed, with no new event."""
    if app.rebalancing:
        return
    await _tick()


@app.timer(interval=min(1.0, settings.tick_seconds))  # type: ignore[untyped-decorator]
async def watch_input() -> None:
    """Seek back a partition whose consumer went quiet short of the next record to
    count (every second, so such records wait seconds, not a tick period)."""
    if app.rebalancing:
        return
    async with _turn:
        if app.rebalancing:  # as in tick(): the table may not hold the sections yet
            return
        await _seek_back_if_idle(_active_partitions(), time.time())
        _checkpoint({}, force=True)
        await changelog.send()


async def _tick() -> None:
    """Refresh the owned sections TICK_CHUNK at a time, each chunk with the turn
    held: a sweep of every section at once held input records back ~85 ms (200
    sections, bench.feeds), every tick period."""
    started = time.time()
    keys = sorted(
        {sid.encode() for sid in catalogue} | {k for k in sections_table.keys() if is_core_key(k)}
    )
    owned = published = 0
    longest = 0.0
    for first in range(0, len(keys), TICK_CHUNK):
        async with _turn:
            # Checked with the turn held: a rebalance may have started while we
            # waited, and until its recovery ends the table does not hold the newly
            # assigned sections yet; loading one then would start it from zero and
            # overwrite its real state. (app.rebalancing stays true until recovery ends.)
            if app.rebalancing:
                return
            now = time.time()
            active = _active_partitions()
            outboxes = []
            for key in keys[first : first + TICK_CHUNK]:
                if partition_for(key, settings.field_partitions) not in active:
                    continue
                owned += 1
                agg = _load(key)
                # BW_STATE_PUBLISH_INTERVAL holds the timer's states back too (its
                # alert transitions go at once); publish_held sends what changed.
                hold = _hold_back(key, time.monotonic())
                pub = engine.refresh(agg, now, state=not hold)
                if pub and _store(key, agg, pub):
                    outboxes.append((key, agg.outbox))
                    if pub.state_doc is not None:
                        _state_sent(key, time.monotonic())
                if hold and pub.state_doc is None:
                    _held.setdefault(key, _last_state[key] + settings.state_publish_interval)
            await changelog.send()
            await _publish(outboxes)
            published += len(outboxes)
            longest = max(longest, time.time() - now)
    SECTIONS.set(owned)
    TICK_SECONDS.observe(longest)
    if longest > 0.25:
        log.info(
            "tick: %d sections in %.2f s, held the worker up to %.2f s at a time, %d published",
            owned,
            time.time() - started,
            longest,
            published,
        )


async def _seek_back_if_idle(partitions: set[int], now: float) -> None:
    """Seek back a partition whose consumer went quiet before the expected record."""
    for p in partitions:
        if not _cursors.knows(p):
            _start_cursor(p, now)  # nothing delivered yet: it has retry_after to arrive
        tp = TP(topics.field_events, p)
        end = app.consumer.highwater(tp)
        if end is not None and _cursors.lagging(p, end, now):
            position = await app.consumer.position(tp)
            if position is not None and position < end:
                continue  # still fetching (a backlog), not past a skipped record
            await _seek_back(tp, _cursors.expected(p), f"quiet at end offset {end}")


# --- issue 12: domain metrics, input lag and pipeline SLOs ----------------------
# (services/aggregator/metrics.py). Everything is read at scrape time from the
# sections and partitions this worker owns now, so a section that moved away
# leaves no series here and a sum over workers counts each section once.
INGEST_TO_PUBLISHED, EVENT_LAG = domain_metrics.latency_histograms()
publish_latency = domain_metrics.PublishLatency(INGEST_TO_PUBLISHED)


def _owned_snapshots() -> list[domain_metrics.SectionSnapshot]:
    # While partitions move the table may not hold the new sections yet (as in
    # _tick): loading one would start it from zero. Show no section until the
    # worker owns them again.
    if app.rebalancing:
        return []
    active = _active_partitions()
    now, bs = time.time(), settings.bucket_seconds
    out = []
    cores = {k for k in sections_table.keys() if is_core_key(k)}
    for key in sorted({sid.encode() for sid in catalogue} | cores):
        if partition_for(key, settings.field_partitions) not in active:
            continue
        # As _tick does (it loads every owned section each period, so this is
        # nearly always the cache). Synchronous: no batch runs meanwhile.
        agg = _load(key)
        section = catalogue.get(agg.section_id)
        if section is None:
            continue  # removed from the catalogue: no rules, no labels to give it
        firing = tuple(sorted((rule, e.severity) for rule, e in agg.episodes.items()))
        out.append(
            domain_metrics.SectionSnapshot(
                section_id=agg.section_id,
                country=section.country,
                counts={
                    "1h": windows.window_sum(agg.buckets, now, windows.HOUR, bs),
                    "24h": windows.window_sum(agg.buckets, now, windows.DAY, bs),
                    "7d": windows.window_sum(agg.buckets, now, 7 * windows.DAY, bs),
                },
                level=max((s for _, s in firing), key=SEVERITY_ORDER.__getitem__, default="low"),
                firing=firing,
                last_event_at=agg.last_event_at,
            )
        )
    return out


def _input_positions() -> list[tuple[int, int, int]]:
    if app.rebalancing:
        return []
    out = []
    for p in sorted(_active_partitions()):
        end = app.consumer.highwater(TP(topics.field_events, p))
        if end is not None and _cursors.knows(p):
            out.append((p, end, _cursors.expected(p)))
    return out


REGISTRY.register(
    domain_metrics.SectionCollector(_owned_snapshots, catalogue, [r.id for r in rules])
)
REGISTRY.register(domain_metrics.InputLagCollector(topics.field_events, _input_positions))
# --- end of issue 12 block --------------------------------------------------------


_not_ready_since: float | None = None
_stall_reported_at: float | None = None


async def watch_rebalance() -> None:
    """Log what the consumer waits for when a rebalance or recovery lasts longer than
    BW_STALL_REPORT_SECONDS (Faust itself says only that no changelog record
    arrives). Started with the worker, not as an app timer: Faust starts those only
    once the first recovery has completed, and a first recovery can hang too."""
    global _not_ready_since, _stall_reported_at
    period = min(5.0, settings.stall_report_seconds)
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        if _ready():
            _not_ready_since = None
            continue
        if _not_ready_since is None:
            _not_ready_since = now - period  # not ready since this period at least
        lasted = now - _not_ready_since
        if lasted >= settings.stall_report_seconds and (
            _stall_reported_at is None or now - _stall_reported_at >= 60.0
        ):
            _stall_reported_at = now
            log.warning(
                "not ready for %.1f s (rebalance or table recovery); the consumer's state:\n%s",
                lasted,
                stall.describe(app),
            )


def _ready() -> bool:
    """Joined the group, tables recovered, counting."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    return not app.rebalancing and bool(recovery.completed.is_set())


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    # ``?name[]=...`` (repeatable) serves only those series, as prometheus_client's
    # own handlers do: a full page with 200 sections costs milliseconds, and a
    # benchmark polling it every 20 ms took 31 % of the worker's CPU (py-spy).
    names = request.query.getall("name[]", [])
    registry = REGISTRY.restricted_registry(names) if names else REGISTRY
    return web.bytes(generate_latest(registry), content_type="text/plain; version=0.0.4")


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    return web.json({"status": "ok"})


@app.page("/readyz")
async def readyz(web: Any, request: Any) -> Any:
    ready = _ready()
    return web.json({"ready": ready}, status=200 if ready else 503)


def set_replication() -> None:
    """Replicate Faust's own topics (the changelog, repartitions) like ours: the
    settings' factor and min.insync.replicas, or the defaults by cluster size,
    asked of the cluster once before the worker declares them."""
    import sys

    from services.common.errors import ConfigError
    from services.common.kafka import replication_for, wait_for_broker

    async def ask() -> Any:
        # Wait for the cluster as Faust would (it retries for ever), saying so.
        while True:
            try:
                await wait_for_broker(settings, timeout=30)
                return await replication_for(settings)
            except TimeoutError as exc:
                log.warning("waiting for Kafka: %s", exc)

    # A loop of its own, never set as current: Faust makes its loop afterwards.
    loop = asyncio.new_event_loop()
    try:
        replication = loop.run_until_complete(ask())
    except ConfigError as exc:
        print(f"borderwatch aggregator: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    finally:
        loop.close()
    app.conf.topic_replication_factor = replication.factor
    sections_table.extra_topic_configs["min.insync.replicas"] = str(replication.min_insync)
    log.info(
        "Faust topics: replication factor %d, min.insync.replicas %d (%d brokers)",
        replication.factor,
        replication.min_insync,
        replication.brokers,
    )


def run_worker() -> None:
    """Start this process as a Faust worker (blocks until SIGTERM/SIGINT)."""
    from faust.worker import Worker

    set_replication()

    class QuietWorker(Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # Faust's terminal spinner sets the root logger to DEBUG so that it can
            # spin on every record: every aiokafka debug line was then formatted
            # (~3% of the worker's CPU, profiled) and escape codes filled the log.
            self.spinner = None

        async def on_first_start(self) -> None:
            await super().on_first_start()
            self.add_future(watch_rebalance())

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            gctune.tune()  # see services/common/gctune.py

        def _on_sigusr2(self) -> None:
            # mode opens pdb on SIGUSR2, on the worker's loop: counting would stop
            # until someone at its stdin typed "continue". SIGUSR1 is the dump.
            log.warning(
                "SIGUSR2 ignored (mode would open a debugger and stop counting); "
                "SIGUSR1 writes every thread's stack and tasks to this log"
            )

    worker = QuietWorker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
