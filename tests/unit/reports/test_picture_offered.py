"""The assessor's picture decodes only each section's newest state (Picture.offer_state).

The stream is the real aggregator's: an Engine counts events and refreshes on
the clock, and its publications become what the assessor reads, the states on
``bw.section-state`` (each with its version header) and the hours states no
longer carry on ``bw.section-hours``. Whatever the order those records arrive
in, a picture that is offered the states (and decodes only the newest per
section) must end up as the one that decoded and applied every state.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.state import BatchOutcome, Engine, SectionAggregate, hour_records
from services.common.catalogue import Catalogue
from services.common.headers import version_header, version_of
from services.reports.discrepancy import DiscrepancyRule
from services.reports.picture import Picture
from tests.unit.factories import NOW, iso, section

SECTIONS = ("LV-KRA", "LV-SIL")
RULE = DiscrepancyRule(id="official-vs-field", type="report_discrepancy")
STEP = 20 * 60  # the clock moves on by 20 minutes between refreshes

# One record as the assessor's reader receives it: ("state", section, version,
# bytes) or ("hour", document).
Record = tuple[Any, ...]


def _stream(counts: list[list[int]]) -> list[Record]:
    """What the aggregator publishes while ``counts[step][section]`` crossing
    attempts arrive at each step (the clock moving on by STEP), in publication order."""
    engine = Engine(Catalogue([section(s) for s in SECTIONS]), [])
    aggs = {s: SectionAggregate(section_id=s) for s in SECTIONS}
    start = NOW - len(counts) * STEP
    out: list[Record] = []
    offset = 0
    for step, per_section in enumerate(counts):
        now = start + step * STEP
        for sid, n in zip(SECTIONS, per_section, strict=True):
            agg = aggs[sid]
            if n:
                event = {
                    "event_id": f"{sid}-{step}",
                    "kind": "crossing_attempt",
                    "section_id": sid,
                    "observed_at": iso(now - 60),
                    "count": n,
                }
                engine.apply_record(agg, 0, offset, [event], BatchOutcome())
                offset += 1
            pub = engine.refresh(agg, now)
            outbox = pub.to_outbox()
            if outbox is None:
                continue
            for _, value, _ in hour_records(sid, outbox):
                out.append(("hour", orjson.loads(value)))
            if outbox["state"] is not None:
                state = outbox["state"]
                out.append(("state", sid, state["version"], orjson.dumps(state)))
    return out


def _read(records: list[Record], offered: bool) -> Picture:
    p = Picture([RULE])
    for record in records:
        if record[0] == "hour":
            p.apply_hour(record[1])
        elif offered:
            p.offer_state(record[1], record[2], record[3])
        else:
            p.apply_state(orjson.loads(record[3]))
    p.settle()
    return p


counts_strategy = st.lists(
    st.lists(st.integers(0, 3), min_size=len(SECTIONS), max_size=len(SECTIONS)),
    # 25 h to 3 days: hours leave the states' 24 and go to bw.section-hours
    min_size=25 * 3600 // STEP,
    max_size=3 * 24 * 3600 // STEP,
)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), counts=counts_strategy)
def test_any_arrival_order_gives_the_picture_that_decoded_every_state(
    data: st.DataObject, counts: list[list[int]]
) -> None:
    records = _stream(counts)
    arrived = data.draw(st.permutations(records))
    # Duplicates too: a state sent again after a take-over has the same version.
    arrived += data.draw(st.lists(st.sampled_from(records), max_size=5)) if records else []
    every = _read(arrived, offered=False)
    newest = _read(arrived, offered=True)
    assert newest.offered == 0
    assert newest.states == every.states
    assert newest.history == every.history


def test_only_the_newest_state_of_a_section_is_decoded() -> None:
    records = [r for r in _stream([[1, 2]] * 30) if r[0] == "state"]
    kra = [r for r in records if r[1] == "LV-KRA"]
    assert len(kra) > 2
    p = Picture([RULE])
    for _, sid, version, raw in reversed(kra):  # newest first: the older ones are dropped
        p.offer_state(sid, version, raw)
    assert p.offered == 1
    # Not decodable: decoding any state but the kept one would fail the test.
    p.offer_state("LV-SIL", 1, b"not json")
    p.offer_state("LV-SIL", 2, orjson.dumps(orjson.loads(records[-1][3]) | {"version": 2}))
    p.settle()
    assert p.states["LV-KRA"]["version"] == kra[-1][2]
    assert p.states["LV-SIL"]["version"] == 2
    # Older than what is applied: not even kept.
    p.offer_state("LV-KRA", kra[0][2], b"not json")
    assert p.offered == 0


def test_a_state_that_does_not_decode_or_match_its_header_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = next(r for r in reversed(_stream([[1, 1]] * 3)) if r[0] == "state" and r[1] == "LV-SIL")
    p = Picture([RULE])
    p.offer_state("LV-KRA", 4, b"{", "topic s, partition 0, offset 9")
    p.offer_state("LV-SIL", good[2] + 1, good[3], "topic s, partition 1, offset 3")
    with caplog.at_level(logging.WARNING):
        p.settle()
    assert p.states == {} and p.offered == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("(topic s, partition 0, offset 9)" in m for m in messages)
    assert any(f"the record says section 'LV-SIL' version {good[2] + 1}" in m for m in messages), (
        messages
    )
    # The others go on: the right state of the same section still applies.
    p.offer_state("LV-SIL", good[2], good[3])
    p.settle()
    assert p.states["LV-SIL"]["version"] == good[2]


def test_reading_the_picture_applies_what_was_offered_first() -> None:
    kra = [r for r in _stream([[0, 0]] * 2 + [[5, 0]] * 2) if r[0] == "state" and r[1] == "LV-KRA"]
    at = datetime.fromtimestamp(NOW, UTC)
    p = Picture([RULE])
    p.offer_state("LV-KRA", kra[-2][2], kra[-2][3])
    p.discrepancies(at, ["LV"])
    assert p.offered == 0 and p.states["LV-KRA"]["version"] == kra[-2][2]
    p.offer_state("LV-KRA", kra[-1][2], kra[-1][3])
    p.assessments(at, ["LV"])
    assert p.offered == 0 and p.states["LV-KRA"]["version"] == kra[-1][2]


def test_the_version_header_round_trips() -> None:
    name, value = version_header(42)
    assert version_of([("bw-received-ms", b"1"), (name, value)]) == 42
    assert version_of(None) is None
    assert version_of([]) is None
    for bad in (b"", b"-1", b"4.2", b"x", "42"):
        assert version_of([(name, bad)]) is None  # type: ignore[list-item]
