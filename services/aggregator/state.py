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

import base64
import hashlib
import logging
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.models import SEVERITY_ORDER, Alert, HourlyPoint, SectionState, Severity, WindowCounts
from services.aggregator import windows
from services.aggregator.rules import Episode, Measures, Rule, SurgeRule, evaluate
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
    # event-id hash -> bucket it was counted in; expires with the bucket (dedupe)
    seen: dict[int, int] = field(default_factory=dict)
    last_by_kind: dict[str, float] = field(default_factory=dict)
    created_at: float = 0.0
    # The last publication (state + alert transitions, as JSON-ready dicts). It is
    # stored with the aggregate before it is sent, so a worker that restores this
    # aggregate after a crash can send it again (identical duplicates only).
    outbox: dict[str, Any] | None = None
    # not stored: the expiry floor last applied to ``seen`` (recomputed after a load)
    seen_floor: int | None = field(default=None, compare=False)
    # not stored: ``seen`` as two int64 arrays in insertion order, kept up by
    # add_seen, so a write packs them without walking the dict (None: rebuild)
    seen_arrays: tuple[array[int], array[int]] | None = field(
        default=None, compare=False, repr=False
    )

    def add_seen(self, key: int, bucket: int) -> None:
        self.seen[key] = bucket
        if self.seen_arrays is not None:
            self.seen_arrays[0].append(key)
            self.seen_arrays[1].append(bucket)

    def packed_seen(self) -> list[str]:
        """The dedupe map as two base64 int64 arrays (8 bytes an id, not ~40 as text)."""
        arrays = self.seen_arrays
        if arrays is None or len(arrays[0]) != len(self.seen):
            arrays = self.seen_arrays = (
                array("q", self.seen.keys()),
                array("q", self.seen.values()),
            )
        return [base64.b64encode(a.tobytes()).decode() for a in arrays]

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
                "seen": self.packed_seen(),
                "last_by_kind": self.last_by_kind,
                "created_at": self.created_at,
                "outbox": self.outbox,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> SectionAggregate:
        data: dict[str, Any] = orjson.loads(raw)
        arrays = _unpack(data.get("seen"))
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
            seen=dict(zip(*arrays, strict=True)),
            last_by_kind=data.get("last_by_kind", {}),
            created_at=data.get("created_at", 0.0),
            outbox=data.get("outbox"),
            seen_arrays=arrays,
        )


def _unpack(packed: list[str] | None) -> tuple[array[int], array[int]]:
    keys, values = array("q"), array("q")
    if packed:
        keys.frombytes(base64.b64decode(packed[0]))
        values.frombytes(base64.b64decode(packed[1]))
    return keys, values


_MASK64 = (1 << 64) - 1


def id_hash(event_id: str) -> int:
    """A stable signed 64-bit digest of an event id (both halves of the UUID folded)."""
    try:
        value = int(event_id.replace("-", ""), 16)
    except ValueError:
        value = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=16).digest(), "big")
    folded = ((value >> 64) ^ value) & _MASK64
    return folded - (1 << 64) if folded >= 1 << 63 else folded


@dataclass
class BatchOutcome:
    counted: int = 0
    skipped_replay: int = 0
    late: int = 0
    duplicates: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class Publication:
    """What one update of a section asks the worker to send."""

    state: SectionState | None
    alerts: list[Alert]

    def __bool__(self) -> bool:
        return self.state is not None or bool(self.alerts)

    def to_outbox(self) -> dict[str, Any] | None:
        if not self:
            return None
        return {
            "state": self.state.model_dump(mode="json") if self.state is not None else None,
            "alerts": [a.model_dump(mode="json") for a in self.alerts],
        }


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
        max_seen: int = 2_000_000,
    ) -> None:
        if windows.DAY % bucket_seconds:
            raise ValueError("bucket_seconds must divide a day")
        self.catalogue = catalogue
        self.rules = rules
        self.bucket_seconds = bucket_seconds
        self.grace_seconds = grace_seconds
        self.max_seen = max_seen
        longest_rule = max((_reach(r) for r in rules), default=0)
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
        topic: str = "",
    ) -> None:
        """Count one input record (a batch of one section's events) unless the
        aggregate already reflects its offset. Events already counted (same
        ``event_id``) and events later than the grace period are not counted."""
        if offset <= agg.offsets.get(partition, -1):
            outcome.skipped_replay += len(events)
            return
        agg.offsets[partition] = offset
        agg.partition = partition
        bs = self.bucket_seconds
        for event in events:
            ts = datetime.fromisoformat(event["observed_at"]).timestamp()
            key = id_hash(str(event["event_id"]))
            if key in agg.seen:
                outcome.duplicates += 1
                continue
            if agg.watermark is not None and ts < agg.watermark - self.grace_seconds:
                outcome.late += 1
                log.warning(
                    "late event %s of %s at %s (watermark %s, grace %ss) not counted; "
                    "topic=%s partition=%s offset=%s",
                    event.get("event_id"),
                    agg.section_id,
                    event["observed_at"],
                    _iso(agg.watermark).isoformat(),
                    self.grace_seconds,
                    topic,
                    partition,
                    offset,
                )
                continue
            kind = event["kind"]
            windows.add(agg.buckets, kind, ts, int(event["count"]), bs)
            agg.add_seen(key, windows.bucket_start(ts, bs))
            if agg.watermark is None or ts > agg.watermark:
                agg.watermark = ts
            if agg.last_event_at is None or ts > agg.last_event_at:
                agg.last_event_at = ts
            if ts > agg.last_by_kind.get(kind, 0.0):
                agg.last_by_kind[kind] = ts
            outcome.counted += 1
            outcome.by_kind[kind] = outcome.by_kind.get(kind, 0) + 1

    def refresh(self, agg: SectionAggregate, now: float) -> Publication:
        """Expire old buckets, evaluate the rules at ``now`` and build the state to
        publish if anything a reader can see has changed."""
        section = self.catalogue.get(agg.section_id)
        if section is None:  # removed from the catalogue since: keep counting, no rules
            return Publication(None, [])
        if not agg.created_at:
            agg.created_at = now
        windows.expire(agg.buckets, now, self.keep_seconds, self.bucket_seconds)
        self._expire_seen(agg, now)
        alerts = self._evaluate(agg, section, now)
        state = self._state(agg, section, now)
        fingerprint = _fingerprint(state)
        if fingerprint == agg.fingerprint and not alerts:
            return Publication(None, [])
        agg.version += 1
        agg.fingerprint = fingerprint
        return Publication(state.model_copy(update={"version": agg.version}), alerts)

    def _expire_seen(self, agg: SectionAggregate, now: float) -> None:
        """Forget event ids whose bucket no window (nor grace) can reach; and if a
        section ever holds more than ``max_seen`` ids, the oldest buckets' ids."""
        bs = self.bucket_seconds
        floor = windows.bucket_start(now, bs) - self.keep_seconds + bs
        if agg.seen_floor is None or floor > agg.seen_floor or len(agg.seen) > self.max_seen:
            agg.seen = {k: b for k, b in agg.seen.items() if b >= floor}
            agg.seen_arrays = None
            while len(agg.seen) > self.max_seen:
                oldest = min(agg.seen.values())
                log.warning(
                    "%s: more than %d event ids to remember; forgetting bucket %s",
                    agg.section_id,
                    self.max_seen,
                    _iso(oldest).isoformat(),
                )
                agg.seen = {k: b for k, b in agg.seen.items() if b > oldest}
                agg.seen_arrays = None
            agg.seen_floor = floor

    def _evaluate(self, agg: SectionAggregate, section: Section, now: float) -> list[Alert]:
        out = []
        measures = Measures(
            agg.buckets, now, self.bucket_seconds, agg.last_by_kind, agg.created_at or now
        )
        for rule in self._rules_for.get(section.id, []):
            value, ladder = rule.assess(measures)
            before = agg.episodes.get(rule.id)
            episode, alert = evaluate(
                rule, section, value, before, agg.episode_counts.get(rule.id, 0), now, ladder
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
        hourly = windows.series(agg.buckets, now, 24, bs, step_seconds=windows.HOUR)
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


def _reach(rule: Rule) -> int:
    """How far back a rule looks."""
    if isinstance(rule, SurgeRule):
        return windows.parse_duration(rule.baseline) + windows.HOUR
    return rule.window_seconds


def _fingerprint(state: SectionState) -> str:
    """What a reader can see, minus the time stamps that move on every tick."""
    visible = orjson.dumps(
        state.model_dump(mode="json", exclude={"updated_at", "version"}),
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.blake2b(visible, digest_size=16).hexdigest()
