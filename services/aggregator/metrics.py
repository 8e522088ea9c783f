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

Every metric is in seconds or a plain count. ``_created`` series are turned
off (they double the series of every counter and histogram and no query here
uses them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Histogram, disable_created_metrics
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
