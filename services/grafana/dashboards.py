"""The Grafana dashboards, built as code with grafana-foundation-sdk (pinned: 0.0.21).

Run ``borderwatch grafana export`` (or ``make dashboards``) to write
``deploy/grafana/dashboards/*.json``; ``--check`` says whether the committed
files are stale. Grafana provisions those files (``deploy/grafana/provisioning``)
with the Prometheus datasource of uid :data:`DATASOURCE_UID`.

Two dashboards:

- *Border overview* (``bw-border-overview``): per-country and per-section counts
  for 1 h / 24 h / 7 d, impact levels over time, firing alerts, a map of the
  sections coloured by level, official figures against field counts,
  discrepancy transitions, closure-criteria factor levels and stage per
  country; variables ``country`` and ``section``.
- *borderwatch service health* (``bw-service-health``): ingest rate, rejects,
  503s and 429s, consumer and view lag, latencies, GC pauses, feed clients and
  drops, the publisher queue, report analysis rates and time.

Queries read the raw metrics with ``sum``/``max by``: every worker exports only
the sections it owns, so a sum over workers counts each section once. Every
panel sets its legend explicitly (``legendFormat`` on each query and the legend
options), so a series is never named by its raw label set.

:func:`queries` lists every query with the panel it belongs to; the
integration test runs each one through a real Prometheus.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # The classic (v1) dashboard builder warns "prefer dashboardv2" when imported;
    # file provisioning reads the v1 JSON model, so that is the one we want.
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_b
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import (
        geomap,
        prometheus,
        stat,
        statetimeline,
        table,
        timeseries,
    )
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models import geomap as geomap_model
    from grafana_foundation_sdk.models import prometheus as prom_model

DATASOURCE_UID = "bw-prometheus"
DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
DATASOURCE = common.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)

# Impact level gauge values (services/aggregator/metrics.py) and their colours.
LEVELS = (("low", "green"), ("medium", "yellow"), ("high", "orange"), ("critical", "red"))
# Closure-criteria factor levels and stages (services/reports/assessment.py).
FACTOR_LEVELS = (
    ("none", "green"),
    ("low", "blue"),
    ("elevated", "yellow"),
    ("high", "orange"),
    ("critical", "red"),
)
STAGES = (
    ("monitoring", "green"),
    ("restrictions", "yellow"),
    ("crossing point closure", "orange"),
    ("full closure criteria met", "red"),
)
SECTION_FILTER = 'country=~"$country", section=~"$section"'


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str
    instant: bool


# --- small helpers ------------------------------------------------------------


def _query(expr: str, legend: str, ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    if instant:
        q = q.instant().format(prom_model.PromQueryFormat.TABLE)
    else:
        q = q.range()
    return q


def _legend(*calcs: str) -> common_b.VizLegendOptions:
    return (
        common_b.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.TABLE if calcs else common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .calcs(list(calcs))
    )


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def _level_mappings(levels: tuple[tuple[str, str], ...] = LEVELS) -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                str(i): model.ValueMappingResult(text=name, color=colour, index=i)
                for i, (name, colour) in enumerate(levels)
            }
        )
    ]


def _level_thresholds(levels: tuple[tuple[str, str], ...] = LEVELS) -> dash.ThresholdsConfig:
    return _thresholds(*((None if i == 0 else float(i), c) for i, (_, c) in enumerate(levels)))


def _timeseries(title: str, unit: str, description: str, w: int = 12, h: int = 8) -> Any:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .legend(_legend("lastNotNull", "max"))
        .line_width(1)
        .fill_opacity(10)
    )


def _transform(ident: str, options: dict[str, Any]) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=ident, options=options)


def _variables() -> list[dash.QueryVariable]:
    country = (
        dash.QueryVariable("country")
        .label("Country")
        .datasource(DATASOURCE)
        .query({"query": "label_values(bw_section_info, country)", "refId": "country"})
        .definition("label_values(bw_section_info, country)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    section = (
        dash.QueryVariable("section")
        .label("Section")
        .datasource(DATASOURCE)
        .query(
            {
                "query": 'label_values(bw_section_info{country=~"$country"}, section)',
                "refId": "section",
            }
        )
        .definition('label_values(bw_section_info{country=~"$country"}, section)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    return [country, section]


# --- Border overview ----------------------------------------------------------


def border_overview() -> dash.Dashboard:
    country, section = _variables()
    counts_by_window = _transform(
        "groupingToMatrix",
        {
            "columnField": "window",
            "rowField": "country",
            "valueField": "Value",
            "emptyValue": "zero",
        },
    )
    country_table = (
        table.Panel()
        .title("Events per country: 1 h / 24 h / 7 d")
        .description("Field events counted in each rolling window, all kinds, per country.")
        .datasource(DATASOURCE)
        .span(8)
        .height(7)
        .with_target(
            _query(
                'sum by (country, window) (bw_section_events{country=~"$country"})',
                "{{country}} {{window}}",
                instant=True,
            )
        )
        .with_transformation(counts_by_window)
    )
    section_table = (
        table.Panel()
        .title("Events per section: 1 h / 24 h / 7 d")
        .description("Field events counted in each rolling window, all kinds, per section.")
        .datasource(DATASOURCE)
        .span(16)
        .height(7)
        .with_target(
            _query(
                f"sum by (section, window) (bw_section_events{{{SECTION_FILTER}}})",
                "{{section}} {{window}}",
                instant=True,
            )
        )
        .with_transformation(
            _transform(
                "groupingToMatrix",
                {
                    "columnField": "window",
                    "rowField": "section",
                    "valueField": "Value",
                    "emptyValue": "zero",
                },
            )
        )
    )
    country_series = _timeseries(
        "Events per country and kind, last 24 h",
        "short",
        "The rolling 24 h count over time: it rises with events and falls as hours leave the window.",
    ).with_target(
        _query(
            'sum by (country, kind) (bw_section_events{country=~"$country", window="24h"})',
            "{{country}} {{kind}}",
        )
    )
    section_series = _timeseries(
        "Events per section and kind, last hour",
        "short",
        "The rolling 1 h count of the selected sections.",
    ).with_target(
        _query(
            f'sum by (section, kind) (bw_section_events{{{SECTION_FILTER}, window="1h"}})',
            "{{section}} {{kind}}",
        )
    )
    levels = (
        statetimeline.Panel()
        .title("Impact level over time")
        .description(
            "EUROSUR impact level per section: the highest severity among its firing alerts."
        )
        .datasource(DATASOURCE)
        .span(24)
        .height(9)
        .with_target(
            _query(
                f"max by (section) (bw_section_impact_level{{{SECTION_FILTER}}})",
                "{{section}}",
            )
        )
        .mappings(_level_mappings())
        .thresholds(_level_thresholds())
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .min(0)
        .max(3)
        .merge_values(True)
        .show_value(common.VisibilityMode.AUTO)
        .legend(_legend())
    )
    firing_table = (
        table.Panel()
        .title("Firing alerts")
        .description(
            "Alerts firing now, per country, rule and severity (from the aggregator's rules)."
        )
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .with_target(
            _query(
                'sum by (country, rule, severity) (bw_alerts_firing{country=~"$country"}) > 0',
                "{{country}} {{rule}} {{severity}}",
                instant=True,
            )
        )
        .with_transformation(
            _transform(
                "organize",
                {
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": "firing"},
                    "indexByName": {"country": 0, "rule": 1, "severity": 2, "Value": 3},
                },
            )
        )
    )
    firing_series = (
        _timeseries(
            "Firing alerts by severity",
            "short",
            "Number of firing alerts over time, per severity.",
        )
        .with_target(
            _query(
                'sum by (severity) (bw_alerts_firing{country=~"$country"})',
                "{{severity}}",
            )
        )
        .span(12)
    )
    location = (
        common_b.FrameGeometrySource()
        .mode(common.FrameGeometrySourceMode.COORDS)
        .latitude("lat")
        .longitude("lon")
    )
    markers = (
        common_b.MapLayerOptions()
        .type("markers")
        .name("Sections")
        .location(location)
        .tooltip(True)
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "level", "fixed": "green"},
                    "size": {"fixed": 8, "min": 4, "max": 15},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "section", "mode": "field"},
                    "textConfig": {"fontSize": 10, "offsetY": -14},
                },
            }
        )
    )
    map_panel = (
        geomap.Panel()
        .title("Sections by impact level")
        .description("Each section's centre (catalogue), coloured by its impact level now.")
        .datasource(DATASOURCE)
        .span(12)
        .height(12)
        .with_target(
            _query(
                f"max by (section) (bw_section_latitude_degrees{{{SECTION_FILTER}}})",
                "{{section}}",
                ref="lat",
                instant=True,
            )
        )
        .with_target(
            _query(
                f"max by (section) (bw_section_longitude_degrees{{{SECTION_FILTER}}})",
                "{{section}}",
                ref="lon",
                instant=True,
            )
        )
        .with_target(
            _query(
                f"max by (section) (bw_section_impact_level{{{SECTION_FILTER}}})",
                "{{section}}",
                ref="level",
                instant=True,
            )
        )
        .with_transformation(_transform("joinByField", {"byField": "section", "mode": "inner"}))
        .with_transformation(
            _transform(
                "organize",
                {
                    "excludeByName": {"Time 1": True, "Time 2": True, "Time 3": True},
                    "renameByName": {
                        "Value #lat": "lat",
                        "Value #lon": "lon",
                        "Value #level": "level",
                    },
                },
            )
        )
        .view(geomap.MapViewConfig().id("coords").lat(55).lon(25).zoom(6))
        .basemap(common_b.MapLayerOptions().type("default").name("Basemap"))
        .layers([markers])
        .mappings(_level_mappings())
        .thresholds(_level_thresholds())
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
    )
    quiet = (
        stat.Panel()
        .title("Time since the last event")
        .description(
            "Per section: now minus the newest observed_at counted. Sections never seen are absent."
        )
        .datasource(DATASOURCE)
        .span(12)
        .height(12)
        .unit("s")
        .with_target(
            _query(
                f"min by (section) (bw_section_last_event_age_seconds{{{SECTION_FILTER}}})",
                "{{section}}",
                instant=True,
            )
        )
        .thresholds(_thresholds((None, "green"), (6 * 3600, "orange"), (12 * 3600, "red")))
    )
    official = (
        _timeseries(
            "Official figures against field counts",
            "short",
            "The newest one-day figure an official report gave (per country and kind) beside "
            "the field's rolling 24 h count of the same kind in that country's sections. The "
            "report_discrepancy rule compares them period by period and alerts when they "
            "disagree.",
        )
        .with_target(
            _query(
                'max by (country, kind) (bw_report_official_figure{country=~"$country"})',
                "{{country}} {{kind}}: official, one day",
            )
        )
        .with_target(
            _query(
                'sum by (country, kind) (bw_section_events{country=~"$country", window="24h"}) '
                'and on (country, kind) max by (country, kind) (bw_report_official_figure{country=~"$country"})',
                "{{country}} {{kind}}: field, last 24 h",
                ref="B",
            )
        )
        .span(16)
    )
    discrepancies = (
        _timeseries(
            "Discrepancy alert transitions, last hour",
            "short",
            "report_discrepancy alerts that fired or resolved in the last hour, per country.",
        )
        .with_target(
            _query(
                "sum by (country, status) "
                '(increase(bw_report_discrepancy_transitions_total{country=~"$country"}[1h]))',
                "{{country}} {{status}}",
            )
        )
        .span(8)
    )
    factors = (
        statetimeline.Panel()
        .title("Closure-criteria factor levels")
        .description(
            "Each country's assessed factor levels (military risk, intelligence activity, "
            "disinformation, border incidents, migration pressure, humanitarian situation), "
            "from reports and field counts. Decision support: criteria, not decisions."
        )
        .datasource(DATASOURCE)
        .span(16)
        .height(10)
        .with_target(
            _query(
                'max by (country, factor) (bw_assessment_factor_level{country=~"$country"})',
                "{{country}} {{factor}}",
            )
        )
        .mappings(_level_mappings(FACTOR_LEVELS))
        .thresholds(_level_thresholds(FACTOR_LEVELS))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .min(0)
        .max(4)
        .merge_values(True)
        .show_value(common.VisibilityMode.AUTO)
        .legend(_legend())
    )
    stage = (
        stat.Panel()
        .title("Assessment stage")
        .description("The range of measures the criteria met correspond to, per country.")
        .datasource(DATASOURCE)
        .span(8)
        .height(10)
        .with_target(
            _query(
                'max by (country) (bw_assessment_stage{country=~"$country"})',
                "{{country}}",
                instant=True,
            )
        )
        .mappings(_level_mappings(STAGES))
        .thresholds(_level_thresholds(STAGES))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
    )
    return (
        dash.Dashboard("Border overview")
        .uid("bw-border-overview")
        .description("The border picture: counts, impact levels and alerts of every section.")
        .tags(["borderwatch", "border"])
        .editable()
        .timezone("browser")
        .time("now-24h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(country)
        .with_variable(section)
        .with_row(dash.Row("Counts"))
        .with_panel(country_table)
        .with_panel(section_table)
        .with_panel(country_series)
        .with_panel(section_series)
        .with_row(dash.Row("Impact levels and alerts"))
        .with_panel(levels)
        .with_panel(firing_table)
        .with_panel(firing_series)
        .with_row(dash.Row("Map"))
        .with_panel(map_panel)
        .with_panel(quiet)
        .with_row(dash.Row("Reports and assessment"))
        .with_panel(official)
        .with_panel(discrepancies)
        .with_panel(factors)
        .with_panel(stage)
    )


# --- service health -----------------------------------------------------------


def _p(q: float, metric: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[$__rate_interval])))"


def service_health() -> dash.Dashboard:
    panels = [
        _timeseries(
            "Ingest: field events accepted", "ops", "Per second, per kind, all ingest processes."
        ).with_target(
            _query(
                "sum by (kind) (rate(bw_ingest_events_accepted_total[$__rate_interval]))",
                "{{kind}}",
            )
        ),
        _timeseries(
            "Ingest: rejects", "ops", "Field events refused per second, by reason."
        ).with_target(
            _query(
                "sum by (reason) (rate(bw_ingest_events_rejected_total[$__rate_interval]))",
                "{{reason}}",
            )
        ),
        _timeseries(
            "Ingest: 503 and 429",
            "reqps",
            "503: Kafka did not acknowledge in time (senders retry). 429: a token above its rate.",
        )
        .with_target(
            _query(
                "sum(rate(bw_ingest_broker_unavailable_total[$__rate_interval]))",
                "503 broker unavailable",
            )
        )
        .with_target(
            _query(
                "sum(rate(bw_ingest_rate_limited_total[$__rate_interval]))",
                "429 rate limited",
                ref="B",
            )
        ),
        _timeseries("Ingest: request latency p99", "s", "Per route, all ingest processes.")
        .with_target(_query(_p(0.99, "bw_ingest_request_seconds", "route"), "{{route}} p99"))
        .with_target(_query(_p(0.99, "bw_ingest_produce_seconds"), "Kafka ack p99", ref="B")),
        _timeseries(
            "Aggregator: input lag per partition",
            "short",
            "Field-event records not counted yet (end offset minus the next record to count).",
        ).with_target(
            _query(
                "sum by (partition) (bw_aggregator_input_lag_records)",
                "partition {{partition}}",
            )
        ),
        _timeseries(
            "API: view lag",
            "s",
            "How far each API replica's view is behind Kafka, and how long ago Kafka last "
            "answered its fetches (about every 0.5 s when healthy; growing: a view cut off "
            "from a leader, whose record lag reads 0).",
        )
        .with_target(_query("max by (instance) (bw_api_view_lag_seconds)", "{{instance}} behind"))
        .with_target(
            _query(
                "max by (instance) (bw_api_view_fetch_age_seconds)",
                "{{instance}} since a fetch answer",
                ref="B",
            )
        ),
        _timeseries(
            "Pipeline latency",
            "s",
            "Ingest receiving a record to its section state published; observed_at to counted.",
        )
        .with_target(
            _query(_p(0.5, "bw_pipeline_ingest_to_published_seconds"), "ingest → published p50")
        )
        .with_target(
            _query(
                _p(0.99, "bw_pipeline_ingest_to_published_seconds"),
                "ingest → published p99",
                ref="B",
            )
        )
        .with_target(
            _query(_p(0.5, "bw_pipeline_event_lag_seconds"), "observed → counted p50", ref="C")
        )
        .with_target(
            _query(_p(0.99, "bw_aggregator_tick_seconds"), "aggregator tick p99", ref="D")
        ),
        _timeseries(
            "GC pauses p99",
            "s",
            "Longest garbage-collection pauses per service (every request and record waits through one).",
        ).with_target(_query(_p(0.99, "bw_gc_pause_seconds", "job"), "{{job}} p99")),
        _timeseries(
            "Feed clients", "short", "Live-feed clients connected, per API replica."
        ).with_target(_query("sum by (instance) (bw_api_feed_clients)", "{{instance}}")),
        _timeseries(
            "Feed drops",
            "ops",
            "Slow clients closed (4008) and messages they missed, per second.",
        )
        .with_target(
            _query(
                "sum(rate(bw_api_feed_clients_dropped_total[$__rate_interval]))",
                "clients dropped",
            )
        )
        .with_target(
            _query(
                "sum(rate(bw_api_feed_messages_dropped_total[$__rate_interval]))",
                "messages dropped",
                ref="B",
            )
        ),
        _timeseries(
            "Aggregator: publisher queue",
            "short",
            "Section outboxes written to the table and waiting to be sent, per worker.",
        ).with_target(_query("sum by (instance) (bw_aggregator_publish_queue)", "{{instance}}")),
        _timeseries(
            "Report analysis",
            "ops",
            "Reports analysed per second by source type, records that could not be analysed, "
            "and the figures and signals read from them.",
        )
        .with_target(
            _query(
                "sum by (source_type) (rate(bw_reports_analysed_total[$__rate_interval]))",
                "{{source_type}} reports analysed",
            )
        )
        .with_target(
            _query(
                "sum(rate(bw_aggregator_bad_reports_total[$__rate_interval]))",
                "records not analysed",
                ref="B",
            )
        )
        .with_target(
            _query(
                "sum by (source) (rate(bw_report_figures_total[$__rate_interval]))",
                "figures from the {{source}}",
                ref="C",
            )
        )
        .with_target(
            _query(
                "sum(rate(bw_report_signals_total[$__rate_interval]))",
                "signals",
                ref="D",
            )
        ),
        _timeseries(
            "Report analysis time", "s", "Time to analyse one report, all aggregator workers."
        )
        .with_target(_query(_p(0.5, "bw_aggregator_report_analysis_seconds"), "p50"))
        .with_target(_query(_p(0.99, "bw_aggregator_report_analysis_seconds"), "p99", ref="B")),
        _timeseries("Targets up", "short", "1 when Prometheus could scrape the process.")
        .with_target(_query('up{job=~"ingest|api|aggregator"}', "{{job}} {{instance}}"))
        .min(0)
        .max(1),
    ]
    board = (
        dash.Dashboard("borderwatch service health")
        .uid("bw-service-health")
        .description("Ingest, aggregator and API: rates, errors, lag, latency, GC, feeds.")
        .tags(["borderwatch", "health"])
        .editable()
        .timezone("browser")
        .time("now-3h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )
    for panel in panels:
        board = board.with_panel(panel)
    return board


# --- export -------------------------------------------------------------------

BUILDERS = {"border-overview.json": border_overview, "service-health.json": service_health}


def render() -> dict[str, str]:
    """File name -> dashboard JSON text, as committed."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {name: encoder.encode(build().build()) + "\n" for name, build in BUILDERS.items()}


def export(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = DASHBOARD_DIR) -> list[str]:
    """Names of the committed dashboard files that differ from the generator."""
    return [
        name
        for name, text in render().items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]


def _panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(directory: Path = DASHBOARD_DIR) -> list[PanelQuery]:
    """Every query of the committed dashboards, with its dashboard and panel titles."""
    out = []
    for name in BUILDERS:
        doc = json.loads((directory / name).read_text(encoding="utf-8"))
        for panel in _panels(doc):
            for target in panel.get("targets", []):
                out.append(
                    PanelQuery(
                        doc["title"], panel["title"], target["expr"], bool(target.get("instant"))
                    )
                )
    return out
