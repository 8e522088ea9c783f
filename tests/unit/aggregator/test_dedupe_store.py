"""The dedupe store and the bounded section state (state.py), with no broker.

The worker writes each section's update as table records (segments, then the
core) on one changelog partition, and a crash can leave any prefix of them.
These properties replay that: any event order, any split into records and
batches, re-posted ids, and a restore from any prefix of the changelog followed
by a replay from where the worker resumes (one past the restored checkpoint,
or earlier). The end counts must equal the pure engine fed every distinct
event once.
"""

from __future__ import annotations

import random
import sys
import uuid
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.models import KINDS
from services.aggregator import windows
from services.aggregator.rules import load_rules
from services.aggregator.state import (
    CORE_BOUND,
    SEGMENT_IDS,
    BatchOutcome,
    Dedupe,
    Engine,
    SectionAggregate,
    checkpoint_key,
    is_core_key,
    restore_all,
)
from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR
from tests.unit.factories import NOW, iso, section

HOUR = windows.HOUR
GRACE = 2 * HOUR
SECTIONS = ("LV-KRA", "LT-MED")


def _engine() -> Engine:
    return Engine(Catalogue([section(s) for s in SECTIONS]), [], grace_seconds=GRACE)


def _event(eid: str, sid: str, kind: str, ts: float, count: int) -> dict[str, Any]:
    return {
        "event_id": eid,
        "kind": kind,
        "section_id": sid,
        "observed_at": iso(ts),
        "count": count,
    }


Record = tuple[str, list[dict[str, Any]]]  # (section, events): one input record


def _run(
    engine: Engine,
    aggs: dict[str, SectionAggregate],
    records: list[Record],
    first: int,
    batch_sizes: list[int],
    log: list[tuple[bytes, bytes | None]],
    batch_ends: list[tuple[int, int]],
    checkpoint_every: int = 1,
) -> None:
    """Apply records[first:] in batches as the worker does: apply, refresh, write
    each touched section (segments, then core) to ``log``, and the checkpoint
    after every ``checkpoint_every``-th batch (agents._checkpoint writes it at
    most once per interval); note each batch's end offset with the log length
    after its writes."""
    offset = first
    sizes = iter(batch_sizes)
    batches = 0
    while offset < len(records):
        size = max(1, next(sizes, 3))
        touched: dict[str, SectionAggregate] = {}
        for o in range(offset, min(offset + size, len(records))):
            sid, events = records[o]
            agg = touched.setdefault(sid, aggs.setdefault(sid, SectionAggregate(sid)))
            engine.apply_record(agg, 0, o, events, BatchOutcome())
        for agg in touched.values():
            pub = engine.refresh(agg, NOW)
            if pub:
                agg.outbox = pub.to_outbox()
            log.extend(agg.writes())
        offset = min(offset + size, len(records))
        # The worker's checkpoint, after the batch's sections (agents._checkpoint).
        batches += 1
        if batches % checkpoint_every == 0:
            log.append((checkpoint_key(0), b"%d" % (offset - 1)))
        batch_ends.append((offset, len(log)))


def _counts(engine: Engine, aggs: dict[str, SectionAggregate]) -> dict[str, dict[str, int]]:
    out = {}
    for sid in SECTIONS:
        agg = aggs.get(sid) or SectionAggregate(sid)
        out[sid] = windows.window_sum(agg.buckets, NOW, 7 * 24 * HOUR, HOUR)
        # The buckets' index (windows.Held, kept inline by apply_record) gives
        # what a plain sum of the same buckets gives, in every window.
        for window in (HOUR, 2 * HOUR, 24 * HOUR, 7 * 24 * HOUR):
            held = windows.window_sum(agg.buckets, NOW, window, HOUR)
            plain = windows.window_sum(dict(agg.buckets), NOW, window, HOUR)
            assert {k: n for k, n in held.items() if n or k in KINDS} == plain
    return out


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(SECTIONS),
        st.sampled_from(KINDS),
        st.integers(min_value=0, max_value=GRACE - 1),  # within grace of each other
        st.integers(min_value=1, max_value=9),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    events=EVENTS,
    rng=st.randoms(use_true_random=False),
    batch_sizes=st.lists(st.integers(1, 8), max_size=40),
    cut=st.floats(0, 1),
    commit_back=st.integers(0, 5),
    checkpoint_every=st.integers(1, 4),
)
def test_any_order_split_and_restore_point_gives_the_pure_engines_counts(
    events: list[tuple[str, str, int, int]],
    rng: random.Random,
    batch_sizes: list[int],
    cut: float,
    commit_back: int,
    checkpoint_every: int,
) -> None:
    base = NOW - GRACE
    distinct = [
        _event(str(uuid.UUID(int=i + 1)), sid, kind, base + dt, n)
        for i, (sid, kind, dt, n) in enumerate(events)
    ]
    # Re-posts: some events come again in later records (same id, same content).
    stream = list(distinct)
    for e in distinct:
        if rng.random() < 0.2:
            stream.insert(rng.randrange(len(stream) + 1), e)
    # Records: runs of one section's events, as ingest groups a request.
    records: list[Record] = []
    for e in stream:
        if records and records[-1][0] == e["section_id"] and rng.random() < 0.6:
            records[-1][1].append(e)
        else:
            records.append((e["section_id"], [e]))

    engine = _engine()
    log: list[tuple[bytes, bytes | None]] = []
    batch_ends: list[tuple[int, int]] = []
    _run(engine, {}, records, 0, batch_sizes, log, batch_ends, checkpoint_every)

    # A crash leaves a prefix of the changelog. The successor resumes one past the
    # restored checkpoint (agents._start_cursor), or earlier if the consumer's
    # committed offset is earlier (those records are replays).
    kept = int(cut * len(log))
    checkpoint = -1
    for key, value in log[:kept]:
        if key == checkpoint_key(0) and value is not None:
            checkpoint = int(value)
    resume = max(0, checkpoint + 1 - commit_back)
    restored = {agg.section_id: agg for agg in restore_all(log[:kept])}
    _run(engine, restored, records, resume, batch_sizes[::-1], log[:kept], [])

    want: dict[str, Counter[str]] = {sid: Counter() for sid in SECTIONS}
    for e in distinct:
        want[e["section_id"]][e["kind"]] += e["count"]
    got = _counts(engine, restored)
    assert got == {sid: {k: want[sid][k] for k in KINDS} for sid in SECTIONS}


def test_a_section_with_a_million_ids_stays_under_the_bound() -> None:
    """1,000,000 events in one section's 7-day window: the core stays under
    CORE_BOUND (64 KiB) and every segment under SEGMENT_IDS ids."""
    engine = Engine(
        Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml"),
        load_rules(DEFAULT_CONFIG_DIR / "rules.yaml"),
    )
    rng = random.Random(5)
    agg = SectionAggregate("LV-KRA")
    span = 7 * 24 * HOUR - GRACE
    start = NOW - span
    n, per_record = 1_000_000, 1_000
    kinds = KINDS
    largest_core = largest_segment = 0
    for offset in range(n // per_record):
        t0 = start + span * offset / (n // per_record)
        events = [
            _event(
                str(uuid.UUID(int=rng.getrandbits(128))),
                "LV-KRA",
                kinds[i % len(kinds)],
                t0 + i * 0.5,
                1,
            )
            for i in range(per_record)
        ]
        engine.apply_record(agg, 0, offset, events, BatchOutcome())
        if offset % 50 == 0 or offset == n // per_record - 1:
            pub = engine.refresh(agg, NOW)
            if pub:
                agg.outbox = pub.to_outbox()
            for key, value in agg.writes():
                size = len(value or b"")
                if is_core_key(key):
                    largest_core = max(largest_core, size)
                else:
                    largest_segment = max(largest_segment, size)
    assert len(agg.seen) == n
    assert sum(windows.window_sum(agg.buckets, NOW, 7 * 24 * HOUR, HOUR).values()) == n
    assert agg.episodes, "the default rules should fire at this volume (episodes in the core)"
    assert largest_core <= CORE_BOUND, largest_core
    assert largest_segment <= 8 * SEGMENT_IDS + 256, largest_segment


def test_the_id_index_levels_off_once_the_window_turns_over() -> None:
    """Once the window is full, ids leave as fast as they come: the index holds one
    window's ids, and its memory stays within what a dict of them can take (a
    dict never reuses a deleted entry and, at a resize, sizes for 3x the ids it
    holds: at most twice the size a dict of them has when filled in one go;
    ``Dedupe.expire`` copies it back down)."""
    dedupe = Dedupe()
    rng = random.Random(3)
    per_hour, hours = 1_000, 170
    filled = before = 0
    shrank = False
    for hour in range(4 * hours):  # full after 170 hours, then turning over
        bucket = hour * HOUR
        for _ in range(per_hour):
            dedupe.add(rng.getrandbits(63), bucket, "detection", 1)
        dedupe.expire(bucket - (hours - 1) * HOUR)
        assert len(dedupe) == min(hour + 1, hours) * per_hour
        size = sys.getsizeof(dedupe.seen)
        if hour < hours:
            filled = max(filled, size)
        else:
            assert size <= 2 * filled, hour
            shrank = shrank or size < before
        before = size
    assert shrank, "the index was never copied down to the ids it holds"
