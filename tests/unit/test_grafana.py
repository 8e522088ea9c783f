"""The generated Grafana dashboards: committed as generated, well-formed, on real metrics.

That every query parses and returns series is proven against a real Prometheus
in tests/integration/test_prometheus.py (Grafana itself cannot be installed here).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from services.grafana import dashboards
from services.reports.assessment import LEVELS as FACTOR_LEVEL_NAMES
from tests.unit.test_compose import _defined_metrics

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(dashboards.DASHBOARD_DIR.glob("*.json"))


def _doc(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["panels"] if p["type"] != "row"]


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    assert {p.name for p in FILES} == set(dashboards.BUILDERS)
    assert dashboards.stale() == [], "run `borderwatch grafana export` (or `make dashboards`)"


def test_stale_notices_an_edited_file(tmp_path: Path) -> None:
    dashboards.export(tmp_path)
    assert dashboards.stale(tmp_path) == []
    path = tmp_path / "service-health.json"
    path.write_text(path.read_text("utf-8").replace("Feed drops", "Feed drop"), "utf-8")
    assert dashboards.stale(tmp_path) == ["service-health.json"]


def test_the_sdk_is_pinned_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    deps = [d for group in project["project"]["optional-dependencies"].values() for d in group]
    assert "grafana-foundation-sdk==0.0.21" in deps
    assert importlib.metadata.version("grafana-foundation-sdk").lstrip("v") == "0.0.21"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_query_has_a_legend_a_datasource_and_real_metrics(path: Path) -> None:
    doc = _doc(path)
    defined = _defined_metrics()
    assert doc["uid"] in ("bw-border-overview", "bw-service-health")
    for panel in _panels(doc):
        title = panel["title"]
        assert panel["datasource"]["uid"] == dashboards.DATASOURCE_UID, title
        assert panel.get("description"), f"{title}: no description"
        assert panel["targets"], f"{title}: no query"
        if panel["type"] in ("timeseries", "state-timeline"):
            legend = panel["options"]["legend"]
            assert legend["showLegend"] is True and legend["displayMode"], title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == dashboards.DATASOURCE_UID, title
            assert target.get("legendFormat", "").strip(), f"{title}: query without a legend"
            used = {
                re.sub(r"_(bucket|sum|count)$", "", m) if m not in defined else m
                for m in re.findall(r"\bbw_[a-z0-9_]+", target["expr"])
            }
            assert used <= defined, f"{title}: unknown metrics {used - defined}"
            assert used or re.match(r"up\b", target["expr"]), f"{title}: {target['expr']}"


def test_border_overview_has_what_an_operations_centre_needs() -> None:
    doc = _doc(dashboards.DASHBOARD_DIR / "border-overview.json")
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert set(variables) == {"country", "section"}
    assert "$country" in variables["section"]["definition"]
    types = {p["type"] for p in _panels(doc)}
    assert {"state-timeline", "geomap", "table", "timeseries"} <= types
    exprs = " ".join(t["expr"] for p in _panels(doc) for t in p["targets"])
    for metric in (
        "bw_section_events",
        "bw_section_impact_level",
        "bw_alerts_firing",
        "bw_report_official_figure",
        "bw_report_discrepancy_transitions_total",
        "bw_assessment_factor_level",
        "bw_assessment_stage",
    ):
        assert metric in exprs
    # Official figures beside the field's counts of the same country and kind.
    official = next(
        p for p in _panels(doc) if p["title"] == "Official figures against field counts"
    )
    exprs_legends = [(t["expr"], t["legendFormat"]) for t in official["targets"]]
    assert any("bw_report_official_figure" in e and "official" in lg for e, lg in exprs_legends)
    assert any(
        "bw_section_events" in e and 'window="24h"' in e and "field" in lg
        for e, lg in exprs_legends
    )
    factors = next(p for p in _panels(doc) if p["title"] == "Closure-criteria factor levels")
    assert factors["type"] == "state-timeline"
    assert factors["targets"][0]["legendFormat"] == "{{country}} {{factor}}"
    shown = factors["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert [shown[str(i)]["text"] for i in range(5)] == list(FACTOR_LEVEL_NAMES)
    # Each panel filters by the variables it offers.
    for panel in _panels(doc):
        for target in panel["targets"]:
            assert 'country=~"$country"' in target["expr"], panel["title"]
    geomap = next(p for p in _panels(doc) if p["type"] == "geomap")
    location = geomap["options"]["layers"][0]["location"]
    assert (location["mode"], location["latitude"], location["longitude"]) == (
        "coords",
        "lat",
        "lon",
    )
    renamed = next(t for t in geomap["transformations"] if t["id"] == "organize")["options"]
    assert {"lat", "lon", "level"} <= set(renamed["renameByName"].values())


def test_service_health_covers_every_service() -> None:
    doc = _doc(dashboards.DASHBOARD_DIR / "service-health.json")
    exprs = " ".join(t["expr"] for p in _panels(doc) for t in p["targets"])
    for metric in (
        "bw_ingest_events_accepted_total",
        "bw_ingest_events_rejected_total",
        "bw_ingest_broker_unavailable_total",
        "bw_ingest_rate_limited_total",
        "bw_aggregator_input_lag_records",
        "bw_pipeline_ingest_to_published_seconds",
        "bw_gc_pause_seconds",
        "bw_api_feed_clients",
        "bw_api_feed_clients_dropped_total",
        "bw_aggregator_publish_queue",
        "bw_reports_analysed_total",
        "bw_aggregator_bad_reports_total",
        "bw_report_figures_total",
        "bw_aggregator_report_analysis_seconds",
    ):
        assert metric in exprs, metric


def test_queries_lists_every_target() -> None:
    listed = dashboards.queries()
    total = sum(len(p["targets"]) for path in FILES for p in _panels(_doc(path)))
    assert len(listed) == total
    assert any(q.instant for q in listed) and any(not q.instant for q in listed)
