"""The aggregator's scrape-time collectors, each in its own CollectorRegistry."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from schemas.models import KINDS
from services.aggregator.metrics import (
    InputLagCollector,
    PublishLatency,
    SectionCollector,
    SectionSnapshot,
    latency_histograms,
)
from services.common.catalogue import Catalogue
from tests.unit.factories import CONFIG_DIR, NOW

CATALOGUE = Catalogue.load(CONFIG_DIR / "sections.yaml")
RULES = ["crossings-24h", "military-activity"]


def snapshot(section_id: str, **overrides: object) -> SectionSnapshot:
    values: dict[str, object] = {
        "section_id": section_id,
        "country": CATALOGUE[section_id].country,
        "counts": {w: {} for w in ("1h", "24h", "7d")},
        "level": "low",
    }
    values.update(overrides)
    return SectionSnapshot(**values)  # type: ignore[arg-type]


class Owned:
    """What a worker owns: changed between scrapes as a rebalance would."""

    def __init__(self, *snaps: SectionSnapshot) -> None:
        self.snaps = list(snaps)
        self.calls = 0

    def __call__(self) -> list[SectionSnapshot]:
        self.calls += 1
        return self.snaps


def registry_with(owned: Owned) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SectionCollector(owned, CATALOGUE, RULES, clock=lambda: NOW))
    return registry


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for metric in registry.collect() for s in metric.samples if s.name == name]


def test_counts_levels_and_age_of_an_owned_section() -> None:
    counts = {
        "1h": {"crossing_attempt": 4},
        "24h": {"crossing_attempt": 30, "detection": 2},
        "7d": {"crossing_attempt": 90, "detection": 5},
    }
    owned = Owned(
        snapshot(
            "LV-KRA",
            counts=counts,
            level="high",
            firing=(("crossings-24h", "medium"), ("military-activity", "high")),
            last_event_at=NOW - 90,
        )
    )
    reg = registry_with(owned)

    def events(kind: str, window: str) -> float | None:
        return value(
            reg, "bw_section_events", section="LV-KRA", country="LV", kind=kind, window=window
        )

    assert events("crossing_attempt", "1h") == 4
    assert events("crossing_attempt", "24h") == 30
    assert events("detection", "7d") == 5
    assert events("incident", "24h") == 0  # every kind, zeros included
    assert len(series(reg, "bw_section_events")) == len(KINDS) * 3
    assert value(reg, "bw_section_impact_level", section="LV-KRA", country="LV") == 2
    assert value(reg, "bw_section_last_event_age_seconds", section="LV-KRA", country="LV") == 90
    section = CATALOGUE["LV-KRA"]
    assert (
        value(
            reg,
            "bw_section_info",
            section="LV-KRA",
            name=section.name,
            country="LV",
            neighbour=section.neighbour,
        )
        == 1
    )
    assert value(reg, "bw_section_sensor_types", section="LV-KRA", country="LV") == len(
        section.sensors
    )
    assert (
        value(reg, "bw_alerts_firing", country="LV", severity="high", rule="military-activity") == 1
    )
    assert (
        value(reg, "bw_alerts_firing", country="LV", severity="medium", rule="crossings-24h") == 1
    )


def test_alerts_firing_has_a_zero_for_every_country_severity_and_rule() -> None:
    reg = registry_with(Owned())
    got = {(s["country"], s["severity"], s["rule"]) for s in series(reg, "bw_alerts_firing")}
    assert got == {
        (c, sev, r)
        for c in CATALOGUE.countries()
        for sev in ("low", "medium", "high", "critical")
        for r in RULES
    }
    assert all(
        v == 0
        for m in reg.collect()
        for s in m.samples
        if s.name == "bw_alerts_firing"
        for v in [s.value]
    )


def test_a_section_never_seen_has_no_age_series() -> None:
    reg = registry_with(Owned(snapshot("LT-MED")))
    assert value(reg, "bw_section_impact_level", section="LT-MED", country="LT") == 0
    assert series(reg, "bw_section_last_event_age_seconds") == []


def test_a_section_that_moved_away_leaves_no_series() -> None:
    owned = Owned(snapshot("LV-KRA", level="critical", firing=(("military-activity", "critical"),)))
    reg = registry_with(owned)
    assert value(reg, "bw_section_impact_level", section="LV-KRA", country="LV") == 3

    owned.snaps = [snapshot("PL-BIA")]  # the rebalance gave LV-KRA to another worker

    text = generate_latest(reg).decode()
    assert 'section="LV-KRA"' not in text
    assert 'section="PL-BIA"' in text
    assert (
        value(reg, "bw_alerts_firing", country="LV", severity="critical", rule="military-activity")
        == 0
    )


def test_two_workers_summed_count_each_section_once() -> None:
    """Whatever the split, the sum over workers equals one worker holding everything."""
    ids = list(CATALOGUE)
    snaps = {sid: snapshot(sid, counts={"24h": {"detection": i + 1}}) for i, sid in enumerate(ids)}
    one = registry_with(Owned(*snaps.values()))
    first = registry_with(Owned(*(snaps[s] for s in ids[::2])))
    second = registry_with(Owned(*(snaps[s] for s in ids[1::2])))

    def total(*regs: CollectorRegistry, name: str = "bw_section_events") -> float:
        return sum(s.value for r in regs for m in r.collect() for s in m.samples if s.name == name)

    assert total(first, second) == total(one) == sum(range(1, len(ids) + 1))
    for name in ("bw_section_info", "bw_section_impact_level", "bw_alerts_firing"):
        assert total(first, second, name=name) == total(one, name=name)
    assert total(one, name="bw_section_info") == len(ids)


def test_registering_does_not_read_the_worker() -> None:
    owned = Owned()
    registry_with(owned)
    assert owned.calls == 0
    generate_latest(registry_with(owned))
    assert owned.calls == 1


@pytest.mark.parametrize(
    ("field", "overrides", "message"),
    [
        ("level", {"level": "severe"}, "level 'severe'"),
        ("counts", {"counts": {"2h": {}}}, "unknown windows ['2h']"),
        ("firing", {"firing": (("r", "urgent"),)}, "firing rule 'r': severity 'urgent'"),
    ],
)
def test_a_bad_snapshot_is_refused_naming_the_field(
    field: str, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        snapshot("LV-KRA", **overrides)
    assert "LV-KRA" in str(err.value)


def test_input_lag_per_owned_partition() -> None:
    positions = [(3, 120, 100), (0, 50, 50)]
    reg = CollectorRegistry()
    reg.register(InputLagCollector("bw.field-events", lambda: positions))
    labels = {"topic": "bw.field-events"}
    assert (
        reg.get_sample_value("bw_aggregator_input_lag_records", {**labels, "partition": "3"}) == 20
    )
    assert (
        reg.get_sample_value("bw_aggregator_input_lag_records", {**labels, "partition": "0"}) == 0
    )
    assert (
        reg.get_sample_value("bw_aggregator_input_end_offset", {**labels, "partition": "3"}) == 120
    )
    assert reg.get_sample_value("bw_aggregator_input_position", {**labels, "partition": "3"}) == 100
    positions[:] = [(0, 60, 55)]  # partition 3 moved away
    assert (
        reg.get_sample_value("bw_aggregator_input_lag_records", {**labels, "partition": "3"})
        is None
    )
    assert (
        reg.get_sample_value("bw_aggregator_input_lag_records", {**labels, "partition": "0"}) == 5
    )


def test_publish_latency_observes_each_record_when_its_version_is_sent() -> None:
    reg = CollectorRegistry()
    published, _ = latency_histograms(reg)
    clock = [100.0]
    latency = PublishLatency(published, clock=lambda: clock[0])
    latency.counted(b"LV-KRA", 1, [99.9, 99.5])
    latency.counted(b"LV-KRA", 2, [99.95])

    clock[0] = 100.2
    latency.published(b"LV-KRA", 1)  # version 2 is still queued
    name = "bw_pipeline_ingest_to_published_seconds"
    assert reg.get_sample_value(name + "_count") == 2
    assert reg.get_sample_value(name + "_sum") == pytest.approx(0.3 + 0.7)
    assert latency.waiting == 1

    latency.published(b"LV-KRA", 2)
    assert reg.get_sample_value(name + "_count") == 3
    assert latency.waiting == 0
    latency.published(b"LV-KRA", 3)  # nothing queued: nothing observed
    assert reg.get_sample_value(name + "_count") == 3

    latency.counted(b"PL-BIA", 1, [100.0])
    latency.forget()
    latency.published(b"PL-BIA", 1)
    assert reg.get_sample_value(name + "_count") == 3


def test_no_created_series_and_promtool_accepts_the_exposition() -> None:
    reg = registry_with(
        Owned(snapshot("LV-KRA", last_event_at=NOW - 5), snapshot("LT-MED", level="medium"))
    )
    reg.register(InputLagCollector("bw.field-events", lambda: [(0, 10, 7)]))
    published, lag = latency_histograms(reg)
    published.observe(0.2)
    lag.observe(30)
    text = generate_latest(reg).decode()
    assert "_created" not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (Debian package `prometheus`)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
