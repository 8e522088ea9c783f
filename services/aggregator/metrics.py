"""The aggregator's domain and pipeline metrics, built at scrape time (no Faust import).

What an operations centre reads in Grafana comes from the sections this worker
owns *now*:

- ``bw_section_events{section,country,kind,window}``: rolling counts, 1h / 24h / 7d;
- ``bw_section_impact_level{section,country}``: 0 low, 1 medium, 2 high, 3 critical;
- ``bw_section_info{section,name,country,neighbour}``: 1, from the catalogue;
- ``bw_section_sensor_types{section,country}``: sensor types the catalogue lists
  (a section with sensors that reports nothing is suspicious, one without is not);
- ``bw_section_latitude_degrees``, ``bw_section_longitude_degrees``: the section's
  centre, so a Grafana geomap can place it (coordinates as values, not labels);
- ``bw_section_last_event_age_seconds{section,country}``: now - newest ``observed_at``
  (no series before a section's first event);
- ``bw_alerts_firing{country,severity,rule}``: firing alerts, 0 for every severity,
  country and rule, so ``increase`` and ``> 0`` work from the first scrape.

:class:`SectionCollector` calls a function that returns one
:class:`SectionSnapshot` per owned section at every scrape, so a section that
moved to another worker leaves no stale series here, and a sum over every
worker counts each section once. :class:`InputLagCollector` does the same for
consumer lag per input partition.

The pipeline SLO histograms (``bw_pipeline_*``) are observed by the agent:
event-time lag per counted record, and ingest → state-published latency per
record via :class:`PublishLatency`, from the ``bw-received-ms`` header ingest
puts on every record (``services.common.headers``).

Report analysis (issue 11): :class:`ReportCounters` counts what the report
agent and the assessor publish (``bw_reports_analysed_total``,
``bw_report_figures_total``, ``bw_report_signals_total``,
``bw_report_discrepancy_transitions_total``; labels from the catalogue and the
enums, anything else ``other``), and :class:`AssessmentCollector` builds
``bw_assessment_factor_level``, ``bw_assessment_stage`` and
``bw_report_official_figure`` at scrape time for the countries owned now.

Every metric is in seconds or a plain count. ``_created`` series are turned
off (they double the series of every counter and histogram and no query here
uses them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from schemas.models import KINDS, SEVERITY_ORDER
from services.common.catalogue import Catalogue

disable_created_metrics()  # type: ignore[no-untyped-call]

WINDOWS: tuple[str, ...] = ("1h", "24h", "7d")
SEVERITIES: tuple[str, ...] = tuple(SEVERITY_ORDER)


@dataclass(frozen=True)
class SectionSnapshot:
    """What one owned section shows at a scrape.

    ``counts`` maps a window (``1h``, ``24h``, ``7d``) to counts per kind;
    ``firing`` lists (rule id, severity) of its firing alerts; ``last_event_at``
    is the newest ``observed_at`` counted (Unix seconds), None before any.
    """

    section_id: str
    country: str
    counts: Mapping[str, Mapping[str, int]]
    level: str
    firing: tuple[tuple[str, str], ...] = ()
    last_event_at: float | None = None

    def __post_init__(self) -> None:
        if self.level not in SEVERITY_ORDER:
            raise ValueError(
                f"section {self.section_id}: level {self.level!r} is not one of {SEVERITIES}"
            )
        unknown = set(self.counts) - set(WINDOWS)
        if unknown:
            raise ValueError(
                f"section {self.section_id}: counts: unknown windows {sorted(unknown)}, "
                f"expected {WINDOWS}"
            )
        for rule, severity in self.firing:
            if severity not in SEVERITY_ORDER:
                raise ValueError(
                    f"section {self.section_id}: firing rule {rule!r}: severity "
                    f"{severity!r} is not one of {SEVERITIES}"
                )


class SectionCollector(Collector):
    """The ``bw_section_*`` and ``bw_alerts_firing`` families, from ``snapshots()``."""

    def __init__(
        self,
        snapshots: Callable[[], Iterable[SectionSnapshot]],
        catalogue: Catalogue,
        rule_ids: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._snapshots = snapshots
        self._catalogue = catalogue
        self._rule_ids = list(dict.fromkeys(rule_ids))
        self._countries = catalogue.countries()
        self._clock = clock

    def describe(self) -> Iterator[Metric]:
        # Registering must not call ``snapshots()``: the worker may not be running yet.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        events, level, info, sensors, lat, lon, age, firing = families = self._families()
        now = self._clock()
        alerts: dict[tuple[str, str, str], int] = {
            (c, s, r): 0 for c in self._countries for s in SEVERITIES for r in self._rule_ids
        }
        for snap in self._snapshots():
            sid, country = snap.section_id, snap.country
            for window in WINDOWS:
                per_kind = snap.counts.get(window, {})
                for kind in KINDS:
                    events.add_metric([sid, country, kind, window], per_kind.get(kind, 0))
            level.add_metric([sid, country], SEVERITY_ORDER[snap.level])
            section = self._catalogue.get(sid)
            if section is not None:
                info.add_metric([sid, section.name, section.country, section.neighbour], 1)
                sensors.add_metric([sid, country], len(section.sensors))
                lat.add_metric([sid, country], section.centre.lat)
                lon.add_metric([sid, country], section.centre.lon)
            if snap.last_event_at is not None:
                age.add_metric([sid, country], max(0.0, now - snap.last_event_at))
            for rule, severity in snap.firing:
                key = (country, severity, rule)
                alerts[key] = alerts.get(key, 0) + 1
        for (country, severity, rule), n in sorted(alerts.items()):
            firing.add_metric([country, severity, rule], n)
        yield from families

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "bw_section_events",
                "Field events counted in the rolling window, per section and kind",
                labels=["section", "country", "kind", "window"],
            ),
            GaugeMetricFamily(
                "bw_section_impact_level",
                "Impact level of the section: 0 low, 1 medium, 2 high, 3 critical",
                labels=["section", "country"],
            ),
            GaugeMetricFamily(
                "bw_section_info",
                "Catalogue entry of a section counted by this worker (always 1)",
                labels=["section", "name", "country", "neighbour"],
            ),
            GaugeMetricFamily(
                "bw_section_sensor_types",
                "Sensor types the catalogue lists for the section",
                labels=["section", "country"],
            ),
            GaugeMetricFamily(
                "bw_section_latitude_degrees",
                "Latitude of the section's centre (catalogue), for maps",
                labels=["section", "country"],
            ),
            GaugeMetricFamily(
                "bw_section_longitude_degrees",
                "Longitude of the section's centre (catalogue), for maps",
                labels=["section", "country"],
            ),
            GaugeMetricFamily(
                "bw_section_last_event_age_seconds",
                "Seconds since the newest observed_at counted for the section",
                labels=["section", "country"],
            ),
            GaugeMetricFamily(
                "bw_alerts_firing",
                "Alerts firing on the sections this worker counts",
                labels=["country", "severity", "rule"],
            ),
        )


class InputLagCollector(Collector):
    """``bw_aggregator_input_lag_records{topic,partition}`` and the offsets it comes
    from, for the input partitions this worker owns now."""

    def __init__(self, topic: str, positions: Callable[[], Iterable[tuple[int, int, int]]]) -> None:
        self._topic = topic
        self._positions = positions

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        lag, end, position = families = self._families()
        for partition, end_offset, next_offset in sorted(self._positions()):
            labels = [self._topic, str(partition)]
            lag.add_metric(labels, max(0, end_offset - next_offset))
            end.add_metric(labels, end_offset)
            position.add_metric(labels, next_offset)
        yield from families

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        labels = ["topic", "partition"]
        return (
            GaugeMetricFamily(
                "bw_aggregator_input_lag_records",
                "Input records on the partition not counted yet (end offset - position)",
                labels=labels,
            ),
            GaugeMetricFamily(
                "bw_aggregator_input_end_offset",
                "End offset (high watermark) of the input partition",
                labels=labels,
            ),
            GaugeMetricFamily(
                "bw_aggregator_input_position",
                "Offset of the next input record this worker will count",
                labels=labels,
            ),
        )


def latency_histograms(
    registry: CollectorRegistry | None = None,
) -> tuple[Histogram, Histogram]:
    """(ingest → state published, event-time lag), registered in ``registry``
    (the default registry when None)."""
    registry = REGISTRY if registry is None else registry
    published = Histogram(
        "bw_pipeline_ingest_to_published_seconds",
        "From ingest receiving a record's request to the section state it changed "
        "being handed to the producer (one observation per input record)",
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        registry=registry,
    )
    event_lag = Histogram(
        "bw_pipeline_event_lag_seconds",
        "From a record's newest observed_at to the worker counting it (one observation "
        "per input record; includes how late the field unit sent it)",
        buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 7200, 21600, 86400),
        registry=registry,
    )
    return published, event_lag


@dataclass
class PublishLatency:
    """Receive times of counted records until the section state they changed is sent.

    ``counted(key, version, received)`` after a batch produced ``version`` of a
    section; ``published(key, version)`` when that version went to the producer
    observes every record it includes. Several versions of one section may be
    queued at once; each observes only its own records.
    """

    histogram: Histogram
    clock: Callable[[], float] = time.time
    _pending: dict[bytes, list[tuple[int, list[float]]]] = field(default_factory=dict)

    def counted(self, key: bytes, version: int, received: list[float]) -> None:
        if received:
            self._pending.setdefault(key, []).append((version, received))

    def published(self, key: bytes, version: int) -> None:
        queued = self._pending.get(key)
        if not queued:
            return
        now = self.clock()
        keep = []
        for v, received in queued:
            if v <= version:
                for r in received:
                    self.histogram.observe(max(0.0, now - r))
            else:
                keep.append((v, received))
        if keep:
            self._pending[key] = keep
        else:
            del self._pending[key]

    def forget(self) -> None:
        """Partitions moved: what is queued is sent by whoever owns the sections next."""
        self._pending.clear()

    @property
    def waiting(self) -> int:
        return sum(len(r) for q in self._pending.values() for _, r in q)


# --- report analysis (issue 12, after issue 11) ----------------------------------

REPORT_STATUSES: tuple[str, ...] = ("firing", "resolved")
OTHER = "other"


def bounded(value: object, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``, else ``other``: a label never takes
    a value from outside an enum or the catalogue, whatever a record carries."""
    return value if isinstance(value, str) and value in allowed else OTHER


@dataclass(frozen=True)
class ReportLabels:
    """The label sets of the report-analysis counters (catalogue and enums only)."""

    countries: tuple[str, ...]
    areas: tuple[str, ...]
    languages: tuple[str, ...]
    source_types: tuple[str, ...]
    metrics: tuple[str, ...]
    signals: tuple[str, ...]


class ReportCounters:
    """What the report agent and the assessor count, per analysis they publish.

    - ``bw_reports_analysed_total{country,language,source_type}``;
    - ``bw_report_figures_total{country,metric,source}`` (``country`` is the
      figure's area: a country or ``EU-BY``; ``source`` feed or text);
    - ``bw_report_signals_total{country,signal}`` (the signal's area);
    - ``bw_report_discrepancy_transitions_total{country,status}``: the
      ``report_discrepancy`` alert transitions the assessor published.

    A report is analysed by the one worker that holds its partition of
    ``bw.report-events``, and a transition is published by the one worker that
    owns the country, so a sum over workers counts each once (a record redelivered
    after a crash is analysed, and counted, again). Every combination starts at 0
    so ``increase()`` sees the first report.
    """

    def __init__(self, labels: ReportLabels, registry: CollectorRegistry | None = None) -> None:
        registry = REGISTRY if registry is None else registry
        self.labels = labels
        self.analysed = Counter(
            "bw_reports_analysed_total",
            "Reports analysed and published on bw.report-analysis",
            ["country", "language", "source_type"],
            registry=registry,
        )
        self.figures = Counter(
            "bw_report_figures_total",
            "Figures in the published report analyses (feed: supplied by the feed; "
            "text: read from the text)",
            ["country", "metric", "source"],
            registry=registry,
        )
        self.signals = Counter(
            "bw_report_signals_total",
            "Signal tags in the published report analyses",
            ["country", "signal"],
            registry=registry,
        )
        self.transitions = Counter(
            "bw_report_discrepancy_transitions_total",
            "report_discrepancy alert transitions published (official figures the field "
            "counts do not bear out)",
            ["country", "status"],
            registry=registry,
        )
        for c in labels.countries:
            for lang in (*labels.languages, "none"):
                for st in labels.source_types:
                    self.analysed.labels(c, lang, st)
            for status in REPORT_STATUSES:
                self.transitions.labels(c, status)
        for area in labels.areas:
            for m in labels.metrics:
                for source in ("feed", "text"):
                    self.figures.labels(area, m, source)
            for s in labels.signals:
                self.signals.labels(area, s)

    def analysis(self, out: Mapping[str, Any]) -> None:
        """Count one published ``ReportAnalysis`` message."""
        lb = self.labels
        language = out.get("language")
        self.analysed.labels(
            bounded(out.get("country"), lb.countries),
            "none" if language is None else bounded(language, lb.languages),
            bounded(out.get("source_type"), lb.source_types),
        ).inc()
        for fig in out.get("figures", ()):
            self.figures.labels(
                bounded(fig.get("area"), lb.areas),
                bounded(fig.get("metric"), lb.metrics),
                bounded(fig.get("source"), ("feed", "text")),
            ).inc()
        for sig in out.get("signals", ()):
            self.signals.labels(
                bounded(sig.get("area"), lb.areas), bounded(sig.get("signal"), lb.signals)
            ).inc()

    def transition(self, alert: Mapping[str, Any]) -> None:
        self.transitions.labels(
            bounded(alert.get("country"), self.labels.countries),
            bounded(alert.get("status"), REPORT_STATUSES),
        ).inc()


def official_day_figures(
    analyses: Iterable[Mapping[str, Any]], countries: Iterable[str]
) -> dict[tuple[str, str], int]:
    """(country, kind) -> the newest figure an *official* report gave for one day of
    that country (by ``published_at``; the feed's figure and the text's alike).

    Only metrics that are field kinds (``schemas.models.KINDS``), so each can be
    set against the field's count of the same kind."""
    wanted = set(countries)
    newest: dict[tuple[str, str], tuple[str, int]] = {}
    for a in analyses:
        if a.get("source_type") != "official":
            continue
        published = str(a.get("published_at", ""))
        for fig in a.get("figures", ()):
            area = fig.get("area")
            if area not in wanted or (fig.get("period") or {}).get("label") != "day":
                continue
            if fig.get("metric") not in KINDS:
                continue
            key = (str(area), str(fig["metric"]))
            if key not in newest or newest[key][0] < published:
                newest[key] = (published, int(fig["value"]))
    return {k: v for k, (_, v) in newest.items()}


class AssessmentCollector(Collector):
    """The assessor's gauges for the countries this worker owns *now*, at scrape time:

    - ``bw_assessment_factor_level{country,factor}``: 0 none .. 4 critical;
    - ``bw_assessment_stage{country}``: 0 monitoring .. 3 full closure criteria met;
    - ``bw_report_official_figure{country,kind}``: the newest one-day figure an
      official report gave of a field kind (what Grafana sets against the field's
      24 h counts of that kind).

    ``owned()`` lists the owned countries, ``assessments()`` maps a country to its
    last published assessment (``Assessment`` dict), ``analyses()`` yields the
    report analyses the assessor holds. A country handed to another worker leaves
    no series here (``Gauge.labels().set`` would keep its last value for ever),
    so a sum over workers counts each country once.
    """

    def __init__(
        self,
        owned: Callable[[], Iterable[str]],
        assessments: Callable[[], Mapping[str, Mapping[str, Any]]],
        analyses: Callable[[], Iterable[Mapping[str, Any]]],
        factors: Sequence[str],
        levels: Sequence[str],
        stages: Sequence[str],
    ) -> None:
        self._owned = owned
        self._assessments = assessments
        self._analyses = analyses
        self._factors = tuple(factors)
        self._levels = tuple(levels)
        self._stages = tuple(stages)

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        factor_level, stage, official = families = self._families()
        owned = sorted(set(self._owned()))
        published = self._assessments()
        for country in owned:
            a = published.get(country)
            if a is None:
                continue  # no assessment yet: no series rather than a made-up level
            if a.get("stage") in self._stages:
                stage.add_metric([country], self._stages.index(a["stage"]))
            for f in a.get("factors", ()):
                if f.get("factor") in self._factors and f.get("level") in self._levels:
                    factor_level.add_metric([country, f["factor"]], self._levels.index(f["level"]))
        for (country, kind), value in sorted(
            official_day_figures(list(self._analyses()), owned).items()
        ):
            official.add_metric([country, kind], value)
        yield from families

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "bw_assessment_factor_level",
                "Closure-criteria factor level per country: 0 none, 1 low, 2 elevated, "
                "3 high, 4 critical",
                labels=["country", "factor"],
            ),
            GaugeMetricFamily(
                "bw_assessment_stage",
                "Stage of measures the criteria met correspond to: 0 monitoring, "
                "1 restrictions, 2 closure of crossing points, 3 full closure criteria met",
                labels=["country"],
            ),
            GaugeMetricFamily(
                "bw_report_official_figure",
                "Newest one-day figure an official report gave for the country, per field kind",
                labels=["country", "kind"],
            ),
        )
