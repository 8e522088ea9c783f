"""Per-section aggregate state and the engine that updates it, with no Faust import.

One :class:`SectionAggregate` holds everything the worker knows about a
section: hourly buckets per kind, the input offsets it already reflects (so a
replay after a crash counts nothing twice), the event-time watermark, the
firing alert episodes and the version of the last published state. It is
stored as one orjson value per section in a changelog-backed Faust table.

:class:`Engine` applies batches and wall-clock ticks to aggregates and says
what to publish: the section's new state and the alert transitions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.models import SEVERITY_ORDER, Alert, HourlyPoint, SectionState, Severity, WindowCounts
from services.aggregator import windows
from services.aggregator.rules import Episode, Rule, evaluate
from services.common.catalogue import Catalogue, Section

log = logging.getLogger(__name__)

WINDOW_1H = windows.HOUR
WINDOW_24H = windows.DAY
WINDOW_7D = 7 * windows.DAY


@dataclass
class SectionAggregate:
    section_id: str
    buckets: windows.Buckets = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    watermark: float | None = None
    last_event_at: float | None = None
    episodes: dict[str, Episode] = field(default_factory=dict)
    episode_counts: dict[str, int] = field(default_factory=dict)
    version: int = 0
    fingerprint: str = ""
    partition: int | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "section_id": self.section_id,
                "buckets": {str(k): v for k, v in self.buckets.items()},
                "offsets": {str(k): v for k, v in self.offsets.items()},
                "watermark": self.watermark,
                "last_event_at": self.last_event_at,
                "episodes": {k: e.to_dict() for k, e in self.episodes.items()},
                "episode_counts": self.episode_counts,
                "version": self.version,
                "fingerprint": self.fingerprint,
                "partition": self.partition,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> SectionAggregate:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            section_id=data["section_id"],
            buckets={int(k): v for k, v in data["buckets"].items()},
            offsets={int(k): v for k, v in data["offsets"].items()},
            watermark=data["watermark"],
            last_event_at=data["last_event_at"],
            episodes={k: Episode.from_dict(v) for k, v in data["episodes"].items()},
            episode_counts=data["episode_counts"],
            version=data["version"],
            fingerprint=data["fingerprint"],
            partition=data.get("partition"),
        )


@dataclass
class BatchOutcome:
    counted: int = 0
    skipped_replay: int = 0
    late: int = 0


@dataclass
class Publication:
    """What one update of a section asks the worker to send."""

    state: SectionState | None
    alerts: list[Alert]


def _iso(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Engine:
    """Applies events and clock ticks to section aggregates (pure; no I/O)."""

    def __init__(
        self,
        catalogue: Catalogue,
        rules: list[Rule],
        *,
        bucket_seconds: int = windows.HOUR,
        grace_seconds: int = 2 * windows.HOUR,
    ) -> None:
        if windows.DAY % bucket_seconds:
            raise ValueError("bucket_seconds must divide a day")
        self.catalogue = catalogue
        self.rules = rules
        self.bucket_seconds = bucket_seconds
        self.grace_seconds = grace_seconds
        longest_rule = max((r.window_seconds for r in rules), default=0)
        self.keep_seconds = max(WINDOW_7D, longest_rule) + grace_seconds
        self._rules_for: dict[str, list[Rule]] = {
            sid: [r for r in rules if r.applies_to(sec)] for sid, sec in catalogue.items()
        }

    def apply_record(
        self,
        agg: SectionAggregate,
        partition: int,
        offset: int,
        events: list[dict[str, Any]],
        outcome: BatchOutcome,
    ) -> None:
        """Count one input record (a batch of one section's events) unless the
        aggregate already reflects its offset."""
        if offset <= agg.offsets.get(partition, -1):
            outcome.skipped_replay += len(events)
            return
        agg.offsets[partition] = offset
        agg.partition = partition
        for event in events:
            ts = datetime.fromisoformat(event["observed_at"]).timestamp()
            if agg.watermark is not None and ts < agg.watermark - self.grace_seconds:
                outcome.late += 1
                log.warning(
                    "late event %s of %s at %s (watermark %s, grace %ss) not counted; "
                    "partition=%s offset=%s",
                    event.get("event_id"),
                    agg.section_id,
                    event["observed_at"],
                    _iso(agg.watermark).isoformat(),
                    self.grace_seconds,
                    partition,
                    offset,
                )
                continue
            windows.add(agg.buckets, event["kind"], ts, int(event["count"]), self.bucket_seconds)
            if agg.watermark is None or ts > agg.watermark:
                agg.watermark = ts
            if agg.last_event_at is None or ts > agg.last_event_at:
                agg.last_event_at = ts
            outcome.counted += 1

    def refresh(self, agg: SectionAggregate, now: float) -> Publication:
        """Expire old buckets, evaluate the rules at ``now`` and build the state to
        publish if anything a reader can see has changed."""
        section = self.catalogue.get(agg.section_id)
        if section is None:  # removed from the catalogue since: keep counting, no rules
            return Publication(None, [])
        windows.expire(agg.buckets, now, self.keep_seconds, self.bucket_seconds)
        alerts = self._evaluate(agg, section, now)
        state = self._state(agg, section, now)
        fingerprint = _fingerprint(state)
        if fingerprint == agg.fingerprint and not alerts:
            return Publication(None, [])
        agg.version += 1
        agg.fingerprint = fingerprint
        return Publication(state.model_copy(update={"version": agg.version}), alerts)

    def _evaluate(self, agg: SectionAggregate, section: Section, now: float) -> list[Alert]:
        out = []
        for rule in self._rules_for.get(section.id, []):
            counts = windows.window_sum(agg.buckets, now, rule.window_seconds, self.bucket_seconds)
            value = windows.kinds_sum(counts, (k.value for k in rule.kinds))
            before = agg.episodes.get(rule.id)
            episode, alert = evaluate(
                rule, section, value, before, agg.episode_counts.get(rule.id, 0), now
            )
            if episode is None:
                agg.episodes.pop(rule.id, None)
            else:
                if before is None:
                    agg.episode_counts[rule.id] = agg.episode_counts.get(rule.id, 0) + 1
                agg.episodes[rule.id] = episode
            if alert is not None:
                out.append(alert)
        return out

    def _state(self, agg: SectionAggregate, section: Section, now: float) -> SectionState:
        bs = self.bucket_seconds
        level = max(
            (e.severity for e in agg.episodes.values()),
            key=lambda s: SEVERITY_ORDER[s],
            default=Severity.low.value,
        )
        hourly = windows.series(agg.buckets, now, WINDOW_24H // bs, bs)
        return SectionState(
            section_id=section.id,
            name=section.name,
            country=section.country,
            level=Severity(level),
            counts_1h=WindowCounts(**windows.window_sum(agg.buckets, now, WINDOW_1H, bs)),
            counts_24h=WindowCounts(**windows.window_sum(agg.buckets, now, WINDOW_24H, bs)),
            counts_7d=WindowCounts(**windows.window_sum(agg.buckets, now, WINDOW_7D, bs)),
            hourly=[
                HourlyPoint(start=_iso(start), counts=WindowCounts(**c)) for start, c in hourly
            ],
            last_event_at=_iso(agg.last_event_at) if agg.last_event_at is not None else None,
            firing_alerts=sorted(e.alert_id for e in agg.episodes.values()),
            version=max(agg.version, 1),
            updated_at=_iso(now),
        )


def _fingerprint(state: SectionState) -> str:
    """What a reader can see, minus the time stamps that move on every tick."""
    return orjson.dumps(
        state.model_dump(mode="json", exclude={"updated_at", "version"}),
        option=orjson.OPT_SORT_KEYS,
    ).decode()
