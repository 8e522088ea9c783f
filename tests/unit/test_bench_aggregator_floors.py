"""bench.aggregator_floors builds its payloads and its engine floor from the real engine."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.aggregator_floors import engine_floor, engine_for, event, payload_sizes, update
from bench.feeds import write_catalogue
from services.aggregator.state import SectionAggregate


def test_an_update_counts_the_event_and_writes_a_segment_a_core_and_a_state(
    tmp_path: Path,
) -> None:
    sections = write_catalogue(tmp_path / "sections.yaml", 3)
    engine = engine_for(tmp_path / "sections.yaml")
    agg = SectionAggregate(section_id=sections[0])
    writes, state = update(engine, agg, 0, event(sections[0], datetime.now(UTC)), time.time())
    assert [k for k, _ in writes][-1] == sections[0].encode()  # the core comes last
    assert any(b"|" in k for k, _ in writes)  # and a dedupe segment before it
    assert state is not None
    assert orjson.loads(state)["counts_24h"]["detection"] == 1


def test_payload_sizes_are_a_small_segment_and_kilobytes_of_core_and_state(
    tmp_path: Path,
) -> None:
    sections = write_catalogue(tmp_path / "sections.yaml", 2)
    segment, core, state = payload_sizes(tmp_path / "sections.yaml", sections)
    assert segment < 1_000 < state < core  # the core carries the state as its outbox
    assert engine_floor(tmp_path / "sections.yaml", sections, 50) > 0
