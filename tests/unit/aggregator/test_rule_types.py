"""The any / surge / silence rule types, evaluated through the Engine as the worker does."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.rules import AnyRule, SilenceRule, SurgeRule, load_rules
from services.aggregator.state import BatchOutcome, Engine, SectionAggregate, restore_all
from services.common.catalogue import Catalogue, Section

NOW = datetime(2026, 11, 22, 12, 30, tzinfo=UTC).timestamp()
HOUR = 3600


def _section(sid: str, sensors: list[str]) -> Section:
    return Section.model_validate(
        {
            "id": sid,
            "name": sid,
            "country": sid[:2],
            "neighbour": "BY",
            "centre": {"lat": 55.8, "lon": 27.2},
            "polyline": [[55.7, 27.0], [55.8, 27.1]],
            "sensors": sensors,
        }
    )


CAT = Catalogue([_section("LV-KRA", ["thermal_camera"]), _section("PL-KUZ", [])])


def _events(kind: str, ts: float, count: int = 1, n: int = 1) -> list[dict[str, object]]:
    iso = datetime.fromtimestamp(ts, UTC).isoformat()
    return [
        {"event_id": str(uuid.uuid4()), "kind": kind, "observed_at": iso, "count": count}
        for _ in range(n)
    ]


def _feed(engine: Engine, agg: SectionAggregate, batches: list[list[dict[str, object]]]) -> None:
    for events in batches:
        engine.apply_record(agg, 0, agg.offsets.get(0, -1) + 1, events, BatchOutcome())


def test_default_rules_file_has_every_type() -> None:
    rules = load_rules(Path("deploy/config/rules.yaml"))
    assert {r.type for r in rules} == {"threshold", "surge", "any", "silence"}


def test_any_rule_fires_on_one_event_and_resolves_when_the_window_passes() -> None:
    rule = AnyRule(id="mil", type="any", kinds=["military_activity"], window="6h", severity="high")
    engine = Engine(CAT, [rule])
    agg = SectionAggregate("PL-KUZ")
    _feed(engine, agg, [_events("military_activity", NOW - 60)])
    pub = engine.refresh(agg, NOW)
    assert [(a.status, a.severity) for a in pub.alerts] == [("firing", "high")]
    assert pub.state is not None and pub.state.level == "high"
    assert "one is enough" in pub.alerts[0].summary
    later = engine.refresh(agg, NOW + 7 * HOUR)
    assert [a.status for a in later.alerts] == ["resolved"]
    assert later.state is not None and later.state.level == "low"


def test_surge_compares_the_last_hour_with_the_trailing_mean() -> None:
    rule = SurgeRule(
        id="surge", type="surge", kinds=["crossing_attempt"], factor=3, minimum=10, baseline="24h"
    )
    engine = Engine(CAT, [rule])
    agg = SectionAggregate("LV-KRA")
    # 24 quiet hours of 4 an hour: mean 4, so the surge threshold is max(10, 12) = 12.
    baseline = [_events("crossing_attempt", NOW - h * HOUR, count=4) for h in range(24, 0, -1)]
    _feed(engine, agg, baseline)
    assert engine.refresh(agg, NOW).alerts == []
    _feed(engine, agg, [_events("crossing_attempt", NOW - 30, count=11)])  # this hour: 11 < 12
    assert engine.refresh(agg, NOW).alerts == []
    _feed(engine, agg, [_events("crossing_attempt", NOW - 20, count=2)])  # 13 >= 12
    alerts = engine.refresh(agg, NOW).alerts
    assert [(a.status, a.threshold, a.value) for a in alerts] == [("firing", 12, 13)]
    assert "surge" in alerts[0].summary


def test_silence_fires_only_for_sections_with_sensors_and_resolves_on_an_event() -> None:
    rule = SilenceRule(id="quiet", type="silence", kinds=["detection"], minutes=30)
    engine = Engine(CAT, [rule])
    kra, kuz = SectionAggregate("LV-KRA"), SectionAggregate("PL-KUZ")
    assert engine.refresh(kra, NOW).alerts == []  # first sight: the clock starts now
    engine.refresh(kuz, NOW)
    fired = engine.refresh(kra, NOW + 31 * 60).alerts
    assert [(a.status, a.value) for a in fired] == [("firing", 31)]
    assert "no detection for 31 min" in fired[0].summary
    assert engine.refresh(kuz, NOW + 31 * 60).alerts == []  # no sensors: never silent
    _feed(engine, kra, [_events("detection", NOW + 31 * 60)])
    assert [a.status for a in engine.refresh(kra, NOW + 32 * 60).alerts] == ["resolved"]


def test_silence_counts_from_the_oldest_hour_counted_when_it_is_older_than_the_first_look() -> None:
    rule = SilenceRule(id="quiet", type="silence", kinds=["detection"], minutes=720)
    catalogue = Catalogue([_section("LV-KRA", ["thermal_camera"]), _section("LV-SIL", ["radar"])])
    engine = Engine(catalogue, [rule])
    kra = SectionAggregate("LV-KRA")
    assert engine.refresh(kra, NOW).alerts == []  # first look, no events: not silent
    # A backfill: the sensors reported from 7 days ago until 13 hours ago.
    _feed(
        engine,
        kra,
        [_events("detection", NOW - 7 * 24 * HOUR), _events("detection", NOW - 13 * HOUR)],
    )
    fired = engine.refresh(kra, NOW + 1).alerts
    assert [(a.status, a.value) for a in fired] == [("firing", 780)]
    # A section whose only event is recent is not silent for that reason.
    kuz = SectionAggregate("LV-SIL")
    engine.refresh(kuz, NOW)
    _feed(engine, kuz, [_events("detection", NOW - 60)])
    assert engine.refresh(kuz, NOW + 11 * HOUR).alerts == []
    assert engine.refresh(kuz, NOW + 12 * HOUR).alerts != []  # until it is silent 12 h


def test_a_redelivered_event_id_is_counted_once() -> None:
    engine = Engine(CAT, [])
    agg = SectionAggregate("LV-KRA")
    events = _events("detection", NOW - 60, count=3, n=2)
    outcome = BatchOutcome()
    engine.apply_record(agg, 0, 1, events, outcome)
    engine.apply_record(agg, 1, 5, events + _events("detection", NOW - 30), outcome)
    assert (outcome.counted, outcome.duplicates) == (3, 2)
    again = next(restore_all(agg.writes()))
    engine.apply_record(again, 0, 9, events, outcome)
    assert outcome.duplicates == 4
    state = engine.refresh(again, NOW).state
    assert state is not None and state.counts_24h.detection == 7


def test_event_ids_are_forgotten_with_their_bucket() -> None:
    engine = Engine(CAT, [], grace_seconds=HOUR)
    agg = SectionAggregate("LV-KRA")
    engine.apply_record(agg, 0, 1, _events("detection", NOW - 60), BatchOutcome())
    engine.refresh(agg, NOW)
    assert len(agg.seen) == 1
    engine.refresh(agg, NOW + 7 * 24 * HOUR + 2 * HOUR)
    assert agg.seen == set() and agg.buckets == {}


# --- properties: dedupe and order ---------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["detection", "crossing_attempt", "incident"]),
            st.integers(min_value=0, max_value=110 * 60),  # seconds before NOW, inside grace
            st.integers(min_value=1, max_value=5),
        ),
        min_size=1,
        max_size=60,
    ),
    st.randoms(use_true_random=False),
    st.integers(min_value=1, max_value=7),
)
def test_counts_equal_a_recount_whatever_the_order_duplicates_and_record_split(
    raw: list[tuple[str, int, int]], rnd: random.Random, chunk: int
) -> None:
    events = [
        {
            "event_id": str(uuid.UUID(int=i + 1)),
            "kind": kind,
            "observed_at": datetime.fromtimestamp(NOW - ago, UTC).isoformat(),
            "count": count,
        }
        for i, (kind, ago, count) in enumerate(raw)
    ]
    # Redeliver a random subset, shuffle, and split into records of any size.
    stream = events + rnd.sample(events, k=rnd.randint(0, len(events)))
    rnd.shuffle(stream)
    engine = Engine(CAT, [], grace_seconds=2 * HOUR)
    agg = SectionAggregate("LV-KRA")
    for offset, start in enumerate(range(0, len(stream), chunk)):
        engine.apply_record(agg, 0, offset, stream[start : start + chunk], BatchOutcome())
    state = engine.refresh(agg, NOW).state
    assert state is not None
    for kind in ("detection", "crossing_attempt", "incident"):
        expected = sum(c for k, _, c in raw if k == kind)
        assert getattr(state.counts_24h, kind) == expected
