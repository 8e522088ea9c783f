"""Per-section aggregate state and the engine that updates it, with no Faust import.

A section's state is stored as several records of one changelog-backed table,
all on the section's partition (see :func:`partition_key`):

- the **core** (key: the raw section id): input offsets it already reflects (so
  a replay after a crash skips what is counted), the event-time watermark,
  firing alert episodes, the version of the last published state, and the
  outbox of a publication not yet known to be sent. Its size does not grow with
  the events: at most a few KiB (bounded by the rules and the partitions).
- **dedupe segments** (key: ``{section}|{bucket start}|{n}``): the event ids
  counted in one hourly bucket, at most :data:`SEGMENT_IDS` a segment, *with the
  counts per kind those ids contributed*. A batch rewrites only the open
  segment of each bucket it touched (at most ``8 * SEGMENT_IDS`` bytes) and adds
  new ones, so the bytes written grow with what changed, not with what is held.
  A segment expires (tombstone) with its bucket, after 7 d + grace.

Counts live in the segments, not in the core, so every segment is consistent
on its own: "these ids were counted, and they contributed these counts". The
records of one section's update are written in the order segments, then core,
to the same partition, and Kafka keeps that order. So a crash leaves either the
whole update or a prefix of it: a replayed record whose ids a segment already
holds is a duplicate and counts nothing, and one whose ids no segment holds is
counted again. No prefix can count an event twice or lose one.

:class:`Engine` applies batches and wall-clock ticks to aggregates and says
what to publish: the section's new state (a plain JSON-ready dict that matches
:class:`schemas.models.SectionState`; pydantic stays out of the hot path) and
the alert transitions.
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from collections.abc import Iterable, Iterator, KeysView
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.models import KINDS, SEVERITY_ORDER, Alert, SectionState, Severity
from services.aggregator import windows
from services.aggregator.rules import Episode, Measures, Rule, SurgeRule, evaluate
from services.common.catalogue import Catalogue, Section

log = logging.getLogger(__name__)

WINDOW_1H = windows.HOUR
WINDOW_24H = windows.DAY
WINDOW_7D = 7 * windows.DAY

#: Event ids per dedupe segment: a rewrite of the open segment costs at most 8 bytes each.
SEGMENT_IDS = 256
#: The most a section's core value may take (documented bound; a unit test holds it).
CORE_BOUND = 64 * 1024
_SEP = b"|"


def segment_key(section: bytes, bucket: int, n: int) -> bytes:
    return b"%s|%d|%d" % (section, bucket, n)


def partition_key(key: bytes) -> bytes:
    """The bytes that decide a table key's partition: the section id, so that a
    section's core and its segments always sit on the partition of its input."""
    return key.split(_SEP, 1)[0]


def is_core_key(key: bytes) -> bool:
    return _SEP not in key and not key.startswith(_CHECKPOINT)


_CHECKPOINT = b"#"


def checkpoint_key(partition: int) -> bytes:
    """The key of an input partition's checkpoint: the highest input offset whose
    batch was written whole (every section it touched, then this record, on that
    partition's changelog partition). Counting resumes one past it."""
    return b"#%d" % partition


def checkpoint_partition(key: bytes) -> int | None:
    """The input partition of a checkpoint key (None for any other key)."""
    return int(key[1:]) if key.startswith(_CHECKPOINT) else None


def parse_segment_key(key: bytes) -> tuple[bytes, int, int]:
    section, bucket, n = key.split(_SEP)
    return section, int(bucket), int(n)


@dataclass
class Segment:
    """Up to SEGMENT_IDS event ids of one bucket and the counts they contributed."""

    bucket: int
    n: int
    ids: array[int] = field(default_factory=lambda: array("q"))
    counts: dict[str, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        # JSON counts, a newline (orjson never writes one), then the ids as int64.
        return orjson.dumps(self.counts) + b"\n" + self.ids.tobytes()

    @classmethod
    def from_bytes(cls, bucket: int, n: int, raw: bytes) -> Segment:
        head, _, ids = raw.partition(b"\n")
        seg = cls(bucket, n, array("q"), orjson.loads(head))
        seg.ids.frombytes(ids)
        return seg


class Dedupe:
    """The event ids a section counted, per bucket, in segments (see module doc).

    ``seen`` is the in-memory index; the segments are what is stored. ``dirty``
    and ``gone`` say which segment records the next write must send (rewrite) or
    delete (tombstone).

    ``seen`` is a dict of int keys to None, not a set: CPython's collector never
    looks inside a dict that holds only atomic values, but walks every entry of a
    set on each full collection (5 M ids: 269 ms against 48 ms, measured).

    Once the window turns over, ids leave as fast as they come, and a dict never
    reuses a deleted entry's slot: it fills with dead ones, then resizes for 3x
    the ids it holds, which can double a full section's index
    (``python -m bench.window_steady``: RSS 583 MiB on day 9 and 754 MiB on day
    10, with 4.96 M ids held on both). So ``expire`` copies the index into a dict
    sized for what it holds once a quarter of it has left since the last copy
    (583 MiB on days 8 to 10).
    """

    def __init__(self) -> None:
        self.seen: dict[int, None] = {}
        self.segments: dict[int, list[Segment]] = {}
        self.dirty: set[tuple[int, int]] = set()
        self.gone: list[tuple[int, int]] = []
        self._left = 0  # ids expired since ``seen`` was last copied

    def __len__(self) -> int:
        return len(self.seen)

    def __contains__(self, key: int) -> bool:
        return key in self.seen

    def add(self, key: int, bucket: int, kind: str, count: int) -> None:
        segs = self.segments.get(bucket)
        if segs is None:
            segs = self.segments[bucket] = []
        if not segs or len(segs[-1].ids) >= SEGMENT_IDS:
            segs.append(Segment(bucket, len(segs)))
        seg = segs[-1]
        seg.ids.append(key)
        seg.counts[kind] = seg.counts.get(kind, 0) + count
        self.seen[key] = None
        self.dirty.add((bucket, seg.n))

    def load(self, seg: Segment) -> None:
        """Take a stored segment (restore): its ids and counts."""
        segs = self.segments.setdefault(seg.bucket, [])
        segs.append(seg)
        segs.sort(key=lambda s: s.n)
        self.seen.update(dict.fromkeys(seg.ids))

    def expire(self, floor: int) -> None:
        """Forget the buckets older than ``floor`` (their segments get tombstones)."""
        for bucket in [b for b in self.segments if b < floor]:
            for seg in self.segments.pop(bucket):
                pop = self.seen.pop
                for key in seg.ids:
                    pop(key, None)
                self._left += len(seg.ids)
                self.dirty.discard((bucket, seg.n))
                self.gone.append((bucket, seg.n))
        if self._left * 4 > len(self.seen):
            self.seen = dict(self.seen)  # sized for the ids it holds, no dead entries
            self._left = 0

    def buckets(self) -> windows.Buckets:
        """Counts per bucket and kind: the sum of the segments."""
        out: windows.Buckets = {}
        for bucket, segs in self.segments.items():
            per_kind: dict[str, int] = {}
            for seg in segs:
                for kind, n in seg.counts.items():
                    per_kind[kind] = per_kind.get(kind, 0) + n
            if per_kind:
                out[bucket] = per_kind
        return out

    def segment(self, bucket: int, n: int) -> Segment:
        segs = self.segments[bucket]
        # Numbered from 0 in order (add appends, load sorts), so the n-th is at n:
        # a busy hour holds thousands, and each batch asks for its open one.
        if n < len(segs) and segs[n].n == n:
            return segs[n]
        for seg in segs:
            if seg.n == n:
                return seg
        raise KeyError((bucket, n))


@dataclass
class SectionAggregate:
    section_id: str
    # counts per bucket and kind: in memory only, the sum of the dedupe segments
    buckets: windows.Held = field(default_factory=windows.Held)
    offsets: dict[int, int] = field(default_factory=dict)
    watermark: float | None = None
    last_event_at: float | None = None
    episodes: dict[str, Episode] = field(default_factory=dict)
    episode_counts: dict[str, int] = field(default_factory=dict)
    version: int = 0
    fingerprint: str = ""
    partition: int | None = None
    last_by_kind: dict[str, float] = field(default_factory=dict)
    created_at: float = 0.0
    # Every hour before this one that the section held has been sent to
    # bw.section-hours (None: not yet, e.g. kept from before that topic existed).
    hours_before: int | None = None
    # The last publication (state + alert transitions, as JSON-ready dicts). It is
    # stored with the core before it is sent, so a worker that restores this
    # aggregate after a crash can send it again (identical duplicates only). Once
    # the publisher has sent it (``outbox_sent``), later core writes leave it out.
    outbox: dict[str, Any] | None = None
    outbox_sent: bool = field(default=False, compare=False)
    dedupe: Dedupe = field(default_factory=Dedupe, compare=False, repr=False)
    # not stored: the expiry floor last applied (recomputed after a load)
    seen_floor: int | None = field(default=None, compare=False)

    @property
    def seen(self) -> KeysView[int]:
        """The event-id hashes this section counted (7 d + grace)."""
        return self.dedupe.seen.keys()

    def core_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "format": 2,
                "section_id": self.section_id,
                "offsets": {str(k): v for k, v in self.offsets.items()},
                "watermark": self.watermark,
                "last_event_at": self.last_event_at,
                "episodes": {k: e.to_dict() for k, e in self.episodes.items()},
                "episode_counts": self.episode_counts,
                "version": self.version,
                "fingerprint": self.fingerprint,
                "partition": self.partition,
                "last_by_kind": self.last_by_kind,
                "created_at": self.created_at,
                "hours_before": self.hours_before,
                "outbox": None if self.outbox_sent else self.outbox,
            }
        )

    def writes(self) -> list[tuple[bytes, bytes | None]]:
        """The table records of this section's update, in the order to write them:
        expired segments' tombstones, changed segments, then the core (see the
        module doc). Marks the segments as written."""
        sid = self.section_id.encode()
        dedupe = self.dedupe
        out: list[tuple[bytes, bytes | None]] = [
            (segment_key(sid, b, n), None) for b, n in dedupe.gone
        ]
        out.extend(
            (segment_key(sid, b, n), dedupe.segment(b, n).to_bytes())
            for b, n in sorted(dedupe.dirty)
        )
        dedupe.gone.clear()
        dedupe.dirty.clear()
        out.append((sid, self.core_bytes()))
        return out

    @classmethod
    def restore(
        cls, section_id: str, core: bytes | None, segments: Iterable[tuple[bytes, bytes]] = ()
    ) -> SectionAggregate:
        """Rebuild a section from its stored core and dedupe segments."""
        if core is None:
            agg = cls(section_id=section_id)
            data: dict[str, Any] = {}
        else:
            data = orjson.loads(core)
            agg = cls(
                section_id=data["section_id"],
                offsets={int(k): v for k, v in data["offsets"].items()},
                watermark=data["watermark"],
                last_event_at=data["last_event_at"],
                episodes={k: Episode.from_dict(v) for k, v in data["episodes"].items()},
                episode_counts=data["episode_counts"],
                version=data["version"],
                fingerprint=data["fingerprint"],
                partition=data.get("partition"),
                last_by_kind=data.get("last_by_kind", {}),
                created_at=data.get("created_at", 0.0),
                hours_before=data.get("hours_before"),
                outbox=data.get("outbox"),
            )
        if "buckets" in data:  # written before the segments existed (format 1)
            _migrate(agg, data)
        else:
            for key, raw in segments:
                _, bucket, n = parse_segment_key(key)
                agg.dedupe.load(Segment.from_bytes(bucket, n, raw))
        agg.buckets = windows.Held(agg.dedupe.buckets())
        return agg

    @classmethod
    def from_bytes(cls, raw: bytes) -> SectionAggregate:
        """A section from its core alone (format 1 values carry their ids too)."""
        data = orjson.loads(raw)
        return cls.restore(data["section_id"], raw)


def _migrate(agg: SectionAggregate, data: dict[str, Any]) -> None:
    """Format 1 kept every id and the bucket counts inside the one value: split them
    into segments, all marked to be written (before the new core, which replaces
    the old value; until it lands, a restore migrates again from the old one)."""
    import base64

    keys, values = array("q"), array("q")
    if data.get("seen"):
        keys.frombytes(base64.b64decode(data["seen"][0]))
        values.frombytes(base64.b64decode(data["seen"][1]))
    ids_by_bucket: dict[int, list[int]] = {}
    for key, bucket in zip(keys, values, strict=True):
        ids_by_bucket.setdefault(bucket, []).append(key)
    for bucket_text, counts in data["buckets"].items():
        bucket = int(bucket_text)
        ids = ids_by_bucket.get(bucket, [])
        chunks = [ids[i : i + SEGMENT_IDS] for i in range(0, len(ids), SEGMENT_IDS)] or [[]]
        for n, chunk in enumerate(chunks):
            # The bucket's counts ride with its first segment: the migration's
            # segments land whole or, with the old core, are migrated again.
            seg = Segment(bucket, n, array("q", chunk), dict(counts) if n == 0 else {})
            agg.dedupe.load(seg)
            agg.dedupe.dirty.add((bucket, n))


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
    """What one update of a section asks the worker to send.

    ``hours``: the clock hours this update changed, as ``[hour start, counts]``
    (non-zero kinds only, so an outbox kept in the core stays small), for
    ``bw.section-hours``; :func:`hour_records` expands them."""

    state_doc: dict[str, Any] | None
    alerts: list[Alert]
    hours: list[list[Any]] = field(default_factory=list)
    version: int = field(default=0, compare=False)

    def __bool__(self) -> bool:
        return self.state_doc is not None or bool(self.alerts) or bool(self.hours)

    @property
    def state(self) -> SectionState | None:
        """The state as the contract's model (validated; not for the hot path)."""
        return None if self.state_doc is None else SectionState.model_validate(self.state_doc)

    def to_outbox(self) -> dict[str, Any] | None:
        if not self:
            return None
        out: dict[str, Any] = {
            "state": self.state_doc,
            "alerts": [a.model_dump(mode="json") for a in self.alerts],
        }
        if self.hours:
            out["hours"] = self.hours
            out["version"] = self.version
        return out


def hour_records(section_id: str, outbox: dict[str, Any]) -> list[tuple[bytes, bytes, float]]:
    """The ``bw.section-hours`` records of an outbox: (key, value, timestamp), the
    timestamp being the hour's end, so retention counts from when the hour is over."""
    out = []
    version = int(outbox.get("version", 0))
    for start, counts in outbox.get("hours", ()):
        key = f"{section_id}|{start}"
        doc = {
            "schema_version": 1,
            "key": key,
            "section_id": section_id,
            "start": _iso_bucket(start),
            "counts": _full(counts),
            "version": version,
        }
        out.append((key.encode(), orjson.dumps(doc), float(start + windows.HOUR)))
    return out


def _iso(ts: float) -> str:
    """RFC 3339 in UTC with ``Z``, as pydantic writes it."""
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    return text[:-6] + "Z"


_ISO_CACHE: dict[int, str] = {}


def _iso_bucket(ts: int) -> str:
    text = _ISO_CACHE.get(ts)
    if text is None:
        if len(_ISO_CACHE) > 10_000:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[ts] = _iso(ts)
    return text


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
        dedupe = agg.dedupe
        by_kind = outcome.by_kind
        held = agg.buckets
        totals = held.totals
        made_to = held.made_to
        keys = [id_hash(str(event["event_id"])) for event in events]
        # The record's ids already counted, found in one C-level pass over the big
        # id index: its cache misses overlap, where one lookup per event in the
        # loop waits for each (issue 10, point 4: 2x less per lookup at 5 M ids
        # held). Ids counted further down this loop join ``known`` as they go.
        known = dedupe.seen.keys() & keys
        for event, key in zip(events, keys, strict=True):
            ts = datetime.fromisoformat(event["observed_at"]).timestamp()
            kind = event["kind"]
            if key in known:
                # Counted before; its times still move the maxima (idempotently),
                # so a replay after a crash brings them back exactly.
                outcome.duplicates += 1
                self._note_times(agg, kind, ts)
                continue
            if agg.watermark is not None and ts < agg.watermark - self.grace_seconds:
                outcome.late += 1
                log.warning(
                    "late event %s of %s at %s (watermark %s, grace %ss) not counted; "
                    "topic=%s partition=%s offset=%s",
                    event.get("event_id"),
                    agg.section_id,
                    event["observed_at"],
                    _iso(agg.watermark),
                    self.grace_seconds,
                    topic,
                    partition,
                    offset,
                )
                continue
            count = int(event["count"])
            bucket = int(ts // bs) * bs
            # Held.add, inlined (one event: a few dict operations)
            per_kind = held.get(bucket)
            if per_kind is None:
                per_kind = held.bucket(bucket)
                made_to = held.made_to
            if bucket <= made_to:  # a bucket whose cumulative sum is made (a late event)
                held.stale(bucket)
                made_to = held.made_to
            per_kind[kind] = per_kind.get(kind, 0) + count
            totals[kind] = totals.get(kind, 0) + count
            dedupe.add(key, bucket, kind, count)
            known.add(key)
            self._note_times(agg, kind, ts)
            outcome.counted += 1
            by_kind[kind] = by_kind.get(kind, 0) + 1

    @staticmethod
    def _note_times(agg: SectionAggregate, kind: str, ts: float) -> None:
        if agg.watermark is None or ts > agg.watermark:
            agg.watermark = ts
        if agg.last_event_at is None or ts > agg.last_event_at:
            agg.last_event_at = ts
        if ts > agg.last_by_kind.get(kind, 0.0):
            agg.last_by_kind[kind] = ts

    def refresh(self, agg: SectionAggregate, now: float, state: bool = True) -> Publication:
        """Expire old buckets, evaluate the rules at ``now`` and build the state to
        publish if anything a reader can see has changed.

        ``state=False`` (a publication held back by ``BW_STATE_PUBLISH_INTERVAL``):
        the rules are still evaluated, and an alert transition still comes with
        its state, at once; without one no state is built, and the next full
        refresh publishes whatever changed meanwhile."""
        section = self.catalogue.get(agg.section_id)
        if section is None:  # removed from the catalogue since: keep counting, no rules
            return Publication(None, [])
        if not agg.created_at:
            agg.created_at = now
        self._expire(agg, now)
        touched = sorted({b - b % windows.HOUR for b, _ in agg.dedupe.dirty})
        if touched and touched[0] < agg.created_at:
            # Watched since the oldest hour it counted, if that is before its first
            # refresh: a section whose sensors reported 13 h ago and then nothing
            # is silent now, also to a worker that has just been (re)built from
            # the input or that receives a backfill (silence rules measure from
            # ``since``, which would otherwise keep them quiet for a whole window).
            agg.created_at = float(touched[0])
        hours = self._hours_to_send(agg, now, touched)
        measures = Measures(
            agg.buckets, now, self.bucket_seconds, agg.last_by_kind, agg.created_at or now
        )
        alerts = self._evaluate(agg, section, measures)
        if not state and not alerts:
            return Publication(None, [], hours, agg.version)
        doc = self._state(agg, section, measures)
        fingerprint = _fingerprint(doc)
        if fingerprint == agg.fingerprint and not alerts:
            return Publication(None, [], hours, agg.version)
        agg.version += 1
        agg.fingerprint = fingerprint
        doc["version"] = agg.version
        return Publication(doc, alerts, hours, agg.version)

    def _hours_to_send(
        self, agg: SectionAggregate, now: float, touched: list[int]
    ) -> list[list[Any]]:
        """The clock hours to send to ``bw.section-hours`` with this update, with their
        whole counts: the hours that the published state does not carry.

        A state carries its last 24 hours (compacted, the latest per section), so
        an hour needs a record of its own only once it is older than that: when
        the clock moves it out of the state's window (one record per section per
        hour, from the timer, zeros included), or when a batch touches an hour
        already out of it (a backfill, late events; one per touched hour per
        batch). Live traffic, which touches the current hours, sends none.
        """
        hour = windows.HOUR
        first = windows.bucket_start(now, hour) - 23 * hour  # the state's oldest hour
        starts = {h for h in touched if h < first}
        before, agg.hours_before = agg.hours_before, first
        floor = first - self.keep_seconds
        if before is None:
            # First look (a new section, or one kept from before the topic existed):
            # every hour held that the state does not carry.
            starts.update(b - b % hour for b in agg.buckets if floor <= b < first)
        elif first > before:
            starts.update(range(max(before, floor - floor % hour), first, hour))
        if not starts:
            return []
        return [[s, self._hour_counts(agg, s)] for s in sorted(starts)]

    def _hour_counts(self, agg: SectionAggregate, start: int) -> dict[str, int]:
        """One clock hour's counts (non-zero kinds), over buckets of any width."""
        if self.bucket_seconds == windows.HOUR:
            return {k: n for k, n in agg.buckets.get(start, {}).items() if n}
        counts: dict[str, int] = {}
        for b, per_kind in agg.buckets.items():
            if start <= b < start + windows.HOUR:
                for k, n in per_kind.items():
                    counts[k] = counts.get(k, 0) + n
        return {k: n for k, n in counts.items() if n}

    def _expire(self, agg: SectionAggregate, now: float) -> None:
        """Drop buckets, and the event ids counted in them, that no window (nor
        grace) can reach any more."""
        bs = self.bucket_seconds
        floor = windows.bucket_start(now, bs) - self.keep_seconds + bs
        if agg.seen_floor is None or floor > agg.seen_floor:
            windows.expire(agg.buckets, now, self.keep_seconds, bs)
            agg.dedupe.expire(floor)
            agg.seen_floor = floor

    def _evaluate(self, agg: SectionAggregate, section: Section, measures: Measures) -> list[Alert]:
        out = []
        now = measures.now
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

    def _state(self, agg: SectionAggregate, section: Section, measures: Measures) -> dict[str, Any]:
        """The section state as the JSON document of :class:`SectionState`."""
        bs, now = self.bucket_seconds, measures.now
        level = max(
            (e.severity for e in agg.episodes.values()),
            key=lambda s: SEVERITY_ORDER[s],
            default=Severity.low.value,
        )
        hourly = windows.series(agg.buckets, now, 24, bs, step_seconds=windows.HOUR)
        return {
            "schema_version": 1,
            "section_id": section.id,
            "name": section.name,
            "country": section.country,
            "level": level,
            "counts_1h": _full(measures.window(WINDOW_1H)),
            "counts_24h": _full(measures.window(WINDOW_24H)),
            "counts_7d": _full(measures.window(WINDOW_7D)),
            # a series point already holds every kind in order, unless a kind
            # outside the contract came in
            "hourly": [
                {"start": _iso_bucket(start), "counts": c if len(c) == _KINDS_N else _full(c)}
                for start, c in hourly
            ],
            "last_event_at": _iso(agg.last_event_at) if agg.last_event_at is not None else None,
            "firing_alerts": sorted(e.alert_id for e in agg.episodes.values()),
            "version": max(agg.version, 1),
            "updated_at": _iso(now),
        }


_ZERO = dict.fromkeys(KINDS, 0)
_KINDS_N = len(KINDS)


def _full(counts: dict[str, int]) -> dict[str, int]:
    """Every kind, in the contract's order (kinds outside it are not shown)."""
    out = _ZERO.copy()  # copy-and-update: a third of a comprehension's time
    out.update(counts)
    if len(out) > len(_ZERO):
        return {k: out[k] for k in KINDS}
    return out


def _reach(rule: Rule) -> int:
    """How far back a rule looks."""
    if isinstance(rule, SurgeRule):
        return windows.parse_duration(rule.baseline) + windows.HOUR
    return rule.window_seconds


def _fingerprint(state: dict[str, Any]) -> str:
    """What a reader can see, minus the time stamps that move on every tick."""
    visible = {k: v for k, v in state.items() if k not in ("updated_at", "version")}
    return hashlib.blake2b(orjson.dumps(visible), digest_size=16).hexdigest()


def restore_all(
    records: Iterable[tuple[bytes, bytes | None]],
) -> Iterator[SectionAggregate]:
    """Sections from a changelog's records in order (the last value of each key wins;
    ``None`` deletes): for tests and tools that read the topic directly."""
    latest: dict[bytes, bytes] = {}
    for key, value in records:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    cores = {k: v for k, v in latest.items() if is_core_key(k)}
    segments: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for key, value in latest.items():
        if _SEP in key:
            segments.setdefault(partition_key(key), []).append((key, value))
    for sid in cores.keys() | segments.keys():
        yield SectionAggregate.restore(sid.decode(), cores.get(sid), segments.get(sid, []))
