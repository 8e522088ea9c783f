"""Report-analysis counters and the assessor's scrape-time gauges (services/aggregator/metrics.py)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from schemas.models import ReportSignalName, ReportSourceType
from services.aggregator.metrics import (
    AssessmentCollector,
    ReportCounters,
    ReportLabels,
    official_day_figures,
)
from services.reports.analysis import analysis_message
from services.reports.assessment import FACTORS, LEVELS, STAGES
from services.reports.extract import AREAS
from services.reports.packs import LANGUAGES, METRICS

LABELS = ReportLabels(
    countries=("LT", "LV", "PL"),
    areas=AREAS,
    languages=LANGUAGES,
    source_types=tuple(t.value for t in ReportSourceType),
    metrics=METRICS,
    signals=tuple(s.value for s in ReportSignalName),
)


def counters() -> tuple[ReportCounters, CollectorRegistry]:
    reg = CollectorRegistry()
    return ReportCounters(LABELS, reg), reg


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "report_id": "sg-pl-1",
        "source": {"name": "Straż Graniczna", "type": "official"},
        "country": "PL",
        "published_at": "2026-11-30T10:00:00+01:00",
        "language": "pl",
        "text": "W ciągu ostatniej doby odnotowano 84 próby nielegalnego przekroczenia granicy.",
    }
    return base | overrides


def test_an_analysis_is_counted_by_country_language_source_figures_and_signals() -> None:
    c, reg = counters()
    out = analysis_message(
        report(
            figures=[
                {
                    "kind": "apprehension",
                    "count": 12,
                    "period_start": "2026-11-29T00:00:00+01:00",
                    "period_end": "2026-11-30T00:00:00+01:00",
                }
            ]
        )
    )
    assert {(f["metric"], f["source"]) for f in out["figures"]} == {
        ("crossing_attempt", "text"),
        ("apprehension", "feed"),
    }
    c.analysis(out)
    c.analysis(out)
    assert (
        value(reg, "bw_reports_analysed_total", country="PL", language="pl", source_type="official")
        == 2
    )
    assert (
        value(reg, "bw_reports_analysed_total", country="LV", language="pl", source_type="official")
        == 0
    )
    total = sum(
        s.value for m in reg.collect() for s in m.samples if s.name == "bw_reports_analysed_total"
    )
    assert total == 2
    assert (
        value(
            reg, "bw_report_figures_total", country="PL", metric="crossing_attempt", source="text"
        )
        == 2
    )
    assert (
        value(reg, "bw_report_figures_total", country="PL", metric="apprehension", source="feed")
        == 2
    )
    assert (
        value(reg, "bw_report_figures_total", country="PL", metric="apprehension", source="text")
        == 0
    )


def test_signals_are_counted_per_area_and_signal() -> None:
    c, reg = counters()
    c.analysis(
        {
            "country": "LV",
            "language": None,
            "source_type": "media",
            "figures": [],
            "signals": [
                {"signal": "military_activity", "area": "EU-BY"},
                {"signal": "incident", "area": "LV"},
            ],
        }
    )
    assert (
        value(reg, "bw_reports_analysed_total", country="LV", language="none", source_type="media")
        == 1
    )
    assert value(reg, "bw_report_signals_total", country="EU-BY", signal="military_activity") == 1
    assert value(reg, "bw_report_signals_total", country="LV", signal="incident") == 1
    assert value(reg, "bw_report_signals_total", country="LV", signal="military_activity") == 0


def test_a_label_outside_the_enums_becomes_other_never_the_raw_value() -> None:
    c, reg = counters()
    c.analysis(
        {
            "country": "DE",
            "language": "de",
            "source_type": "blog",
            "figures": [{"area": "DE", "metric": "tanks", "source": "guess"}],
            "signals": [{"signal": "anything at all", "area": "LV"}],
        }
    )
    c.transition({"country": "XX", "status": "odd"})
    assert (
        value(
            reg, "bw_reports_analysed_total", country="other", language="other", source_type="other"
        )
        == 1
    )
    assert (
        value(reg, "bw_report_figures_total", country="other", metric="other", source="other") == 1
    )
    assert value(reg, "bw_report_signals_total", country="LV", signal="other") == 1
    assert (
        value(reg, "bw_report_discrepancy_transitions_total", country="other", status="other") == 1
    )
    text = generate_latest(reg).decode()
    for raw in ("DE", "blog", "tanks", "guess", "anything", "XX", "odd"):
        assert f'"{raw}"' not in text and raw not in text.replace("other", ""), raw


def test_discrepancy_transitions_per_country_and_status() -> None:
    c, reg = counters()
    c.transition({"country": "LV", "status": "firing"})
    c.transition({"country": "LV", "status": "resolved"})
    c.transition({"country": "LV", "status": "firing"})
    assert value(reg, "bw_report_discrepancy_transitions_total", country="LV", status="firing") == 2
    assert (
        value(reg, "bw_report_discrepancy_transitions_total", country="LV", status="resolved") == 1
    )
    assert value(reg, "bw_report_discrepancy_transitions_total", country="PL", status="firing") == 0


def assessment(country: str, stage: str, levels: dict[str, str]) -> dict[str, Any]:
    return {
        "country": country,
        "stage": stage,
        "factors": [{"factor": f, "level": levels.get(f, "none")} for f in FACTORS],
    }


def official(
    report_id: str,
    published: str,
    area: str,
    value: int,
    label: str = "day",
    source_type: str = "official",
) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "source_type": source_type,
        "published_at": published,
        "figures": [
            {"area": area, "metric": "crossing_attempt", "value": value, "period": {"label": label}}
        ],
    }


class World:
    def __init__(self) -> None:
        self.owned = ["LV", "PL"]
        self.published = {
            "LV": assessment("LV", "restrictions", {"military_risk": "elevated"}),
            "PL": assessment("PL", "monitoring", {}),
            "LT": assessment("LT", "crossing_point_closure", {"border_incidents": "critical"}),
        }
        self.analyses = [
            official("a", "2026-11-30T08:00:00+00:00", "LV", 40),
            official("b", "2026-11-30T09:00:00+00:00", "LV", 57),  # newest LV day figure
            official("c", "2026-11-30T10:00:00+00:00", "LV", 900, label="week"),
            official("d", "2026-11-30T11:00:00+00:00", "LV", 3, source_type="media"),
            official("e", "2026-11-30T11:00:00+00:00", "LT", 20),
            # A figure of no field kind has nothing to be set against.
            official("f", "2026-11-30T12:00:00+00:00", "LV", 7)
            | {
                "figures": [
                    {
                        "area": "LV",
                        "metric": "personnel_deployed",
                        "value": 7,
                        "period": {"label": "day"},
                    }
                ]
            },
        ]

    def registry(self) -> CollectorRegistry:
        reg = CollectorRegistry()
        reg.register(
            AssessmentCollector(
                lambda: self.owned,
                lambda: self.published,
                lambda: self.analyses,
                FACTORS,
                LEVELS,
                STAGES,
            )
        )
        return reg


def test_assessment_gauges_only_for_owned_countries() -> None:
    w = World()
    reg = w.registry()
    assert value(reg, "bw_assessment_factor_level", country="LV", factor="military_risk") == 2
    assert value(reg, "bw_assessment_factor_level", country="PL", factor="military_risk") == 0
    assert value(reg, "bw_assessment_stage", country="LV") == 1
    assert value(reg, "bw_assessment_stage", country="LT") is None  # not owned here
    assert value(reg, "bw_report_official_figure", country="LV", kind="crossing_attempt") == 57
    assert value(reg, "bw_report_official_figure", country="LT", kind="crossing_attempt") is None
    assert value(reg, "bw_report_official_figure", country="PL", kind="crossing_attempt") is None


def test_a_country_that_moved_away_leaves_no_series_and_two_workers_sum_once() -> None:
    w = World()
    reg = w.registry()
    assert value(reg, "bw_assessment_stage", country="LV") == 1
    w.owned = ["PL"]  # LV's partition went to another worker
    names = {"bw_assessment_factor_level", "bw_assessment_stage", "bw_report_official_figure"}
    left = [s.labels for m in reg.collect() for s in m.samples if s.name in names]
    assert left and all(labels["country"] == "PL" for labels in left)

    other = World()
    other.owned = ["LV", "LT"]
    per_country: dict[str, int] = {}
    for r in (reg, other.registry()):
        for m in r.collect():
            for s in m.samples:
                if s.name == "bw_assessment_stage":
                    per_country[s.labels["country"]] = per_country.get(s.labels["country"], 0) + 1
    assert per_country == {"LT": 1, "LV": 1, "PL": 1}


def test_an_owned_country_without_an_assessment_has_no_made_up_level() -> None:
    w = World()
    w.owned = ["LV", "LT", "PL"]
    del w.published["LT"]
    reg = w.registry()
    assert value(reg, "bw_assessment_stage", country="LT") is None
    assert value(reg, "bw_assessment_factor_level", country="LT", factor="military_risk") is None


def test_official_day_figures_takes_the_newest_official_day_figure() -> None:
    got = official_day_figures(World().analyses, ["LV", "LT"])
    assert got == {("LV", "crossing_attempt"): 57, ("LT", "crossing_attempt"): 20}


def test_promtool_accepts_the_report_exposition() -> None:
    c, reg = counters()
    c.analysis(analysis_message(report()))
    w = World()
    reg.register(
        AssessmentCollector(
            lambda: w.owned, lambda: w.published, lambda: w.analyses, FACTORS, LEVELS, STAGES
        )
    )
    text = generate_latest(reg).decode()
    assert "_created" not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (Debian package `prometheus`)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
