"""The aggregation engine: counting records into buckets, replay safety, lateness,
published section states and alerts on wall-clock ticks."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.models import KINDS, AlertStatus, SectionHour
from services.aggregator import windows
from services.aggregator.rules import ThresholdRule
from services.aggregator.state import (
    BatchOutcome,
    Engine,
    Publication,
    SectionAggregate,
    hour_records,
    restore_all,
)
from services.common.catalogue import Catalogue
from tests.unit.factories import NOW, field_event, iso, section

HOUR, DAY = windows.HOUR, windows.DAY
CURRENT = windows.bucket_start(NOW, HOUR)
GRACE = 2 * HOUR

RULE = ThresholdRule(
    id="crossings-24h",
    type="threshold",
    kinds=["crossing_attempt"],
    window="24h",
    severity={"low": 10, "medium": 30, "high": 50},
    hysteresis=0.1,
)


@pytest.fixture
def engine() -> Engine:
    catalogue = Catalogue([section("LV-KRA"), section("LT-MED")])
    return Engine(catalogue, [RULE], bucket_seconds=HOUR, grace_seconds=GRACE)


def _event(kind: str = "crossing_attempt", ts: float = NOW, count: int = 1) -> dict[str, Any]:
    return field_event(kind=kind, observed_at=iso(ts), count=count)


def _apply(
    engine: Engine, agg: SectionAggregate, offset: int, *events: dict[str, Any], partition: int = 0
) -> BatchOutcome:
    outcome = BatchOutcome()
    engine.apply_record(agg, partition, offset, list(events), outcome)
    return outcome


def _published(pub: Publication) -> Any:
    assert pub.state is not None, "expected a published state"
    return pub.state


def test_apply_record_counts_events_into_their_event_time_buckets(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")

    outcome = _apply(
        engine,
        agg,
        0,
        _event(ts=NOW, count=5),
        _event(ts=CURRENT, count=2),
        _event("detection", ts=NOW - HOUR, count=3),
    )

    assert (outcome.counted, outcome.skipped_replay, outcome.late) == (3, 0, 0)
    assert agg.buckets == {
        CURRENT: {"crossing_attempt": 7},
        CURRENT - HOUR: {"detection": 3},
    }
    assert agg.watermark == NOW
    assert agg.last_event_at == NOW
    assert agg.offsets == {0: 0}


def test_events_with_a_z_offset_or_another_zone_land_in_the_same_bucket(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    zulu = field_event(observed_at="2026-11-22T12:10:00Z")
    riga = field_event(observed_at="2026-11-22T14:20:00+02:00")

    _apply(engine, agg, 0, zulu, riga)

    assert agg.buckets == {CURRENT: {"crossing_attempt": 6}}


def test_a_replayed_record_is_skipped(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    record = [_event(count=4), _event("incident")]
    _apply(engine, agg, 7, *record)

    again = _apply(engine, agg, 7, *record)
    older = _apply(engine, agg, 3, _event(count=100))

    assert (again.counted, again.skipped_replay) == (0, 2)
    assert (older.counted, older.skipped_replay) == (0, 1)
    assert agg.buckets == {CURRENT: {"crossing_attempt": 4, "incident": 1}}


def test_offsets_are_tracked_per_partition(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 7, _event(count=4), partition=0)

    outcome = _apply(engine, agg, 2, _event(count=1), partition=1)

    assert outcome.counted == 1
    assert agg.offsets == {0: 7, 1: 2}
    assert agg.partition == 1


def test_an_event_older_than_watermark_minus_grace_is_late_and_not_counted(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 0, _event(ts=NOW, count=1))

    outcome = _apply(
        engine,
        agg,
        1,
        _event(ts=NOW - GRACE - 1, count=100),  # late
        _event(ts=NOW - GRACE, count=10),  # exactly at the limit: still counted
    )

    assert (outcome.counted, outcome.late) == (1, 1)
    assert windows.window_sum(agg.buckets, NOW, DAY, HOUR)["crossing_attempt"] == 11
    assert agg.watermark == NOW


def test_a_late_event_is_logged_with_partition_and_offset(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 0, _event(ts=NOW))

    _apply(engine, agg, 41, _event(ts=NOW - DAY), partition=3)

    assert "late event" in caplog.text
    assert "partition=3 offset=41" in caplog.text


def test_refresh_publishes_the_section_state(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    # Oldest first: a two-day-old event after a new one would be late.
    _apply(
        engine,
        agg,
        0,
        _event("detection", ts=NOW - 2 * DAY, count=7),
        _event(ts=NOW - 3 * HOUR, count=5),
        _event(ts=NOW, count=2),
    )

    pub = engine.refresh(agg, NOW)

    state = _published(pub)
    assert (state.section_id, state.country, state.name) == ("LV-KRA", "LV", "Section LV-KRA")
    assert state.version == 1
    assert state.counts_1h.crossing_attempt == 2
    assert state.counts_24h.crossing_attempt == 7
    assert state.counts_7d.crossing_attempt == 7
    assert state.counts_24h.detection == 0
    assert state.counts_7d.detection == 7
    assert len(state.hourly) == 24
    assert state.hourly[-1].start.timestamp() == CURRENT
    assert state.hourly[-4].counts.crossing_attempt == 5
    assert state.last_event_at is not None and state.last_event_at.timestamp() == NOW
    assert state.updated_at.timestamp() == NOW
    assert state.level == "low" and state.firing_alerts == [] and pub.alerts == []


def test_version_grows_by_one_per_visible_change_and_nothing_is_sent_otherwise(
    engine: Engine,
) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 0, _event(count=1))
    assert _published(engine.refresh(agg, NOW)).version == 1
    agg.writes()  # as the worker does after each refresh: the touched hours go once

    assert engine.refresh(agg, NOW) == Publication(None, [])
    assert engine.refresh(agg, NOW + 60) == Publication(None, [])  # same hour, same counts

    _apply(engine, agg, 1, _event(count=1))
    assert _published(engine.refresh(agg, NOW + 120)).version == 2
    agg.writes()

    _apply(engine, agg, 1, _event(count=1))  # a replay changes nothing
    assert engine.refresh(agg, NOW + 180) == Publication(None, [])

    # The next hour moves the hourly series: visible, so published.
    assert _published(engine.refresh(agg, CURRENT + HOUR)).version == 3
    assert agg.version == 3


def test_crossing_a_threshold_fires_and_raises_the_level(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 0, _event(ts=NOW - HOUR, count=57))

    pub = engine.refresh(agg, NOW)

    state = _published(pub)
    [alert] = pub.alerts
    assert (alert.alert_id, alert.status, alert.severity) == (
        "crossings-24h.LV-KRA.1",
        AlertStatus.firing,
        "high",
    )
    assert state.level == "high"
    assert state.firing_alerts == ["crossings-24h.LV-KRA.1"]


def test_rolling_counts_fall_and_the_alert_resolves_on_the_wall_clock(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 0, _event(ts=NOW - HOUR, count=57))
    engine.refresh(agg, NOW)

    pub = engine.refresh(agg, NOW + 23 * HOUR)  # the bucket of NOW - 1 h has left 24 h

    state = _published(pub)
    [alert] = pub.alerts
    assert (alert.alert_id, alert.seq, alert.status) == (
        "crossings-24h.LV-KRA.1",
        2,
        AlertStatus.resolved,
    )
    assert state.counts_24h.crossing_attempt == 0
    assert state.counts_7d.crossing_attempt == 57
    assert state.level == "low"
    assert state.firing_alerts == []
    assert state.version == 2

    # A second surge is a new episode of the same rule.
    _apply(engine, agg, 1, _event(ts=NOW + 23 * HOUR, count=12))
    [again] = engine.refresh(agg, NOW + 23 * HOUR + 60).alerts
    assert (again.alert_id, again.seq, again.severity) == ("crossings-24h.LV-KRA.2", 1, "low")


def test_hours_the_state_does_not_carry_are_sent_once_with_their_whole_counts(
    engine: Engine,
) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    old_hour = CURRENT - 50 * HOUR  # outside the 24 h a state carries
    # A backfill in time order: an old hour, then the current one.
    _apply(engine, agg, 0, _event(ts=old_hour + 10, count=2), _event("detection", old_hour + 20, 4))
    _apply(engine, agg, 1, _event(ts=NOW, count=3))

    # The old hour goes to section-hours; the current one rides in the state.
    pub = engine.refresh(agg, NOW)
    assert pub.hours == [[old_hour, {"crossing_attempt": 2, "detection": 4}]]
    assert _published(pub).hourly[-1].counts.crossing_attempt == 3
    outbox = pub.to_outbox()
    assert outbox is not None
    [(key, value, timestamp)] = hour_records("LV-KRA", outbox)
    assert (key, timestamp) == (b"LV-KRA|%d" % old_hour, old_hour + HOUR)
    doc = SectionHour.model_validate_json(value)
    assert doc.counts.detection == 4 and doc.counts.crossing_attempt == 2
    assert doc.start.timestamp() == old_hour and doc.version == pub.version == 1
    agg.writes()

    # Live events (the hours the state carries) send no hour record; nor does a tick.
    _apply(engine, agg, 2, _event(ts=NOW, count=1))
    assert engine.refresh(agg, NOW + 1).hours == []
    agg.writes()
    assert engine.refresh(agg, NOW + 60).hours == []
    # A late event into an hour out of the state's window sends that hour, whole.
    _apply(engine, agg, 3, _event(ts=CURRENT - 24 * HOUR + 5, count=1))
    agg.watermark = None  # (as if it came first: this test is about the hours, not grace)
    _apply(engine, agg, 4, _event(ts=CURRENT - 24 * HOUR + 5, count=1))
    assert engine.refresh(agg, NOW + 61).hours == [[CURRENT - 24 * HOUR, {"crossing_attempt": 1}]]
    agg.writes()

    # The clock moves on: each hour that leaves the state's window is sent as it
    # closed, zeros included; three hours later, three records.
    pub = engine.refresh(agg, CURRENT + 3 * HOUR)
    assert [h[0] for h in pub.hours] == [CURRENT - 23 * HOUR + i * HOUR for i in range(3)]
    assert [h[1] for h in pub.hours] == [{}, {}, {}]
    assert _published(pub).hourly[0].start.timestamp() == CURRENT - 20 * HOUR
    agg.writes()
    assert engine.refresh(agg, CURRENT + 3 * HOUR + 60).hours == []
    # ...and 23 hours after that, the current hour of the start, with its counts.
    pub = engine.refresh(agg, CURRENT + 24 * HOUR)
    assert pub.hours[-1] == [CURRENT, {"crossing_attempt": 4}]


def test_a_section_kept_from_before_the_hours_topic_sends_its_old_hours_once(
    engine: Engine,
) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 0, _event(ts=NOW - 40 * HOUR, count=5), _event(ts=NOW, count=1))
    engine.refresh(agg, NOW)
    agg.writes()
    stored = orjson.loads(agg.core_bytes())
    del stored["hours_before"]  # a core written before this field existed
    again = SectionAggregate.restore("LV-KRA", orjson.dumps(stored), [])
    again.dedupe = agg.dedupe
    again.buckets = agg.buckets
    assert engine.refresh(again, NOW + 1).hours == [
        [windows.bucket_start(NOW - 40 * HOUR, HOUR), {"crossing_attempt": 5}]
    ]
    again.writes()
    assert engine.refresh(again, NOW + 2).hours == []


def test_old_buckets_expire_after_the_longest_window_and_grace(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 0, _event(ts=NOW, count=3))

    engine.refresh(agg, NOW + 7 * DAY)
    assert agg.buckets != {}
    engine.refresh(agg, NOW + 7 * DAY + GRACE)
    assert agg.buckets == {}


def test_a_section_missing_from_the_catalogue_publishes_nothing(engine: Engine) -> None:
    agg = SectionAggregate(section_id="PL-BIA")
    _apply(engine, agg, 0, _event(count=99))

    assert engine.refresh(agg, NOW) == Publication(None, [])
    assert agg.buckets != {}


def test_section_aggregate_round_trips_through_bytes(engine: Engine) -> None:
    agg = SectionAggregate(section_id="LV-KRA")
    _apply(engine, agg, 5, _event(ts=NOW - HOUR, count=57), _event("incident", ts=NOW), partition=2)
    engine.refresh(agg, NOW)
    assert agg.episodes and agg.version == 1

    again = next(restore_all(agg.writes()))

    assert again == agg
    # ...and it carries on where it stopped: the replay is still skipped.
    assert _apply(engine, again, 5, _event(count=1), partition=2).skipped_replay == 1
    assert engine.refresh(again, NOW) == Publication(None, [])


def test_a_fresh_aggregate_round_trips_through_bytes() -> None:
    agg = SectionAggregate(section_id="LT-MED")

    assert next(restore_all(agg.writes())) == agg


def test_bucket_seconds_must_divide_a_day() -> None:
    with pytest.raises(ValueError, match="must divide a day"):
        Engine(Catalogue([section("LV-KRA")]), [RULE], bucket_seconds=7 * 60)


# --- property ---------------------------------------------------------------------

# Records of one section, each a batch of events whose times lie within the grace
# period of one another (so none is late), in any order of event time.
RECORDS = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(KINDS),
            st.integers(min_value=0, max_value=GRACE - 1),
            st.integers(min_value=1, max_value=50),
        ),
        min_size=1,
        max_size=5,
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=200, deadline=None)
@given(records=RECORDS, rng=st.randoms(use_true_random=False), base_hours=st.integers(0, 6 * 24))
def test_counts_equal_a_brute_force_recount_despite_replays(
    records: list[list[tuple[str, int, int]]], rng: random.Random, base_hours: int
) -> None:
    engine = Engine(Catalogue([section("LV-KRA")]), [RULE], grace_seconds=GRACE)
    base = NOW - base_hours * HOUR - GRACE  # the oldest possible event time
    # Kafka delivers a partition in offset order; after a crash the consumer
    # re-reads from an earlier offset, so some records come again.
    deliveries: list[int] = []
    for offset in range(len(records)):
        deliveries.append(offset)
        if rng.random() < 0.3:
            deliveries.extend(range(rng.randrange(offset + 1), offset + 1))
    agg = SectionAggregate(section_id="LV-KRA")
    skipped = 0
    for offset in deliveries:
        events = [_event(kind, base + dt, n) for kind, dt, n in records[offset]]
        rng.shuffle(events)
        skipped += _apply(engine, agg, offset, *events).skipped_replay

    state = _published(engine.refresh(agg, NOW))

    expected = {window: Counter[str]() for window in ("1h", "24h", "7d")}
    lowest = {"1h": CURRENT, "24h": CURRENT - 23 * HOUR, "7d": CURRENT - 167 * HOUR}
    for record in records:
        for kind, dt, n in record:
            for window, low in lowest.items():
                if windows.bucket_start(base + dt, HOUR) >= low:
                    expected[window][kind] += n
    for window, counts in (
        ("1h", state.counts_1h),
        ("24h", state.counts_24h),
        ("7d", state.counts_7d),
    ):
        assert counts.model_dump() == {k: expected[window][k] for k in KINDS}, window
    assert skipped == sum(len(records[o]) for o in deliveries) - sum(len(r) for r in records)
    assert agg.offsets == {0: len(records) - 1}
