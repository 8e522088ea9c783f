"""The picture as it was at a past hour, rebuilt from Kafka (no FastAPI, no Kafka client).

``GET /api/v1/state?at=<RFC 3339>`` serves the picture of any moment of the last
7 days in the shape of the live one. Its inputs are what the view reads:

- **hourly counts** per section: the latest counts of each (section, clock hour),
  from ``bw.section-hours`` and the hourly series of ``bw.section-state``;
- **alert transitions** from ``bw.alerts`` (kept 30 days, so 7 are covered);
- acknowledgements from ``bw.alert-acks``.

Why a topic of its own for the hours (``bw.section-hours``, key
``{section}|{hour start}``, ``cleanup.policy=compact,delete``, retention 15 d
after the hour's end) and not ``min.compaction.lag.ms`` of 7 d on
``bw.section-state``: a state is published once per batch that touches its
section, so keeping a week of *every* version means a week of states (at a
state per section per second, 200 sections, 120 M records of ~3 KiB) read by
every API at start-up, and a state carries only its last 24 hours, so the hours
of a backfill or of late events older than that would never be in any of them.
The hours topic holds one record per (section, hour): 200 sections x 360 hours
= 72,000 small records whatever the event volume. The aggregator sends an
hour only once the state no longer carries it: as the clock moves it out of
the state's 24 hours (one record per section per hour, from its timer), or
when a batch touches an hour already out of them (a backfill, late events:
one per such hour per batch, never per event); live traffic sends none. So
the newest 24 hours come from the latest state, the older ones from the topic. Retention is 15 days, not 7: ``counts_7d`` at the oldest hour of
the slider reaches 7 days further back, plus a day of grace.

What "at ``at``" means, hour by hour (the history is hourly):

- every clock hour that *started before* ``at`` counts whole; so ``at`` on the
  hour (``22:00``) gives the picture the hour before it closed, and the rolling
  windows are the aggregator's own (:mod:`services.aggregator.windows`), ending
  at that hour;
- the **level** is the highest severity that the section's rules
  (:mod:`services.aggregator.rules`, ``BW_RULES_FILE``) give to those windowed
  counts, with the rules' own ladders (no hysteresis: there is no episode to
  hold a level; so a level held up by hysteresis in the live picture shows
  as the level its counts reach). ``silence`` rules see the last event of a
  kind at the end of its newest non-empty hour, and the section as watched
  since the oldest hour held for it;
- **firing alerts** are the alerts whose latest transition at or before
  ``at`` is ``firing``, as that transition was, with the acks made by then;
- ``last_event_at`` is the live one if it is not after ``at``, else the end of
  the newest non-empty hour before ``at`` (capped at ``at``); ``version`` is 0
  and ``updated_at`` is ``at``: a rebuilt picture is no published state.

The domain code is the aggregator's, imported, not copied: ``rules`` and
``windows`` are plain Python modules with no Faust import (ARCHITECTURE.md), so
the level at ``at`` is the level the aggregator's ladders give.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.models import KINDS, SEVERITY_ORDER
from services.aggregator import windows
from services.aggregator.rules import Measures, Rule, SurgeRule, level_for
from services.common.catalogue import Catalogue

HOUR = windows.HOUR
#: How far back ``at`` may go.
HISTORY_SECONDS = 7 * windows.DAY
#: Hours the view keeps per section: 7 d of slider + the 7 d of its oldest counts_7d + 1 d.
KEEP_HOURS = 15 * 24

_BEFORE = 0.5
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


class HistoryError(ValueError):
    """``at`` cannot be served; the message says why (for a 422 naming ``at``)."""


def parse_at(text: str, now: float) -> float:
    """``at`` as epoch seconds, or :class:`HistoryError` saying what is wrong."""
    if not _RFC3339.match(text.strip()):
        raise HistoryError(
            f"expected an RFC 3339 date-time with an offset, like 2026-11-30T22:00:00Z, "
            f"got {text[:64]!r}"
        )
    try:
        # fromisoformat takes at most 6 fraction digits.
        stamp = re.sub(r"(\.\d{6})\d+", r"\1", text.strip().replace("z", "Z"))
        ts = datetime.fromisoformat(stamp).timestamp()
    except ValueError as exc:
        raise HistoryError(f"not a valid date-time: {text[:64]!r} ({exc})") from None
    if ts > now:
        raise HistoryError(f"{text} is in the future (now is {_iso(now)})")
    if ts < now - HISTORY_SECONDS:
        raise HistoryError(
            f"{text} is older than the 7 days of history (the oldest is {_iso(now - HISTORY_SECONDS)})"
        )
    return ts


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _reach(rule: Rule) -> int:
    if isinstance(rule, SurgeRule):
        return windows.parse_duration(rule.baseline) + HOUR
    return rule.window_seconds


class Rebuilder:
    """Levels and windowed counts of sections at a past moment, from hourly counts."""

    def __init__(self, catalogue: Catalogue, rules: Iterable[Rule]) -> None:
        rules = list(rules)
        self.rules_for = {
            sid: [r for r in rules if r.applies_to(section)] for sid, section in catalogue.items()
        }
        # How far back any rule looks (at least the 24 h window of the counts).
        self.reach = max([_reach(r) for r in rules] + [windows.DAY])

    def section_at(
        self, section_id: str, hours: Mapping[float, Mapping[str, Any]], at: float
    ) -> dict[str, Any]:
        """Counts (1 h, 24 h, 7 d), level and the newest non-empty hour's end at ``at``.

        ``hours``: hour start (epoch s) -> point ``{"start", "counts"}``."""
        # The windows end just before ``at``: every hour that started before it, no
        # later one. Half a second, so that times shifted by it stay exact floats.
        now = at - _BEFORE
        current = windows.bucket_start(now, HOUR)
        # The rules see the hours they can reach (silence included: its window is
        # one of them); the 7 days are summed here, in the same pass.
        week_floor, recent_floor = current - 7 * windows.DAY, current - self.reach
        week = dict.fromkeys(KINDS, 0)
        recent: windows.Buckets = {}
        last_by_kind: dict[str, float] = {}
        oldest = at
        for start, point in hours.items():
            if start >= at:
                continue
            if start < oldest:
                oldest = start
            if start <= week_floor:
                continue
            counts = point["counts"]
            for kind, n in counts.items():
                if n:
                    week[kind] = week.get(kind, 0) + n
            if start > recent_floor:
                recent[int(start)] = counts
                end = min(start + HOUR, at) - _BEFORE  # as seen from ``now``
                for kind, n in counts.items():
                    if n and end > last_by_kind.get(kind, 0.0):
                        last_by_kind[kind] = end
        measures = Measures(recent, now, HOUR, last_by_kind, oldest)
        level = "low"
        for rule in self.rules_for.get(section_id, []):
            value, ladder = rule.assess(measures)
            held = level_for(value, ladder, None, rule.hysteresis)
            if held is not None and SEVERITY_ORDER[held[0]] > SEVERITY_ORDER[level]:
                level = held[0]
        return {
            "level": level,
            "counts_1h": _full(measures.window(HOUR)),
            "counts_24h": _full(measures.window(windows.DAY)),
            "counts_7d": _full(week),
            "newest_event_hour_end": (
                max(last_by_kind.values()) + _BEFORE if last_by_kind else _newest(hours, at)
            ),
        }


def _newest(hours: Mapping[float, Mapping[str, Any]], at: float) -> float | None:
    """The end of the newest hour before ``at`` with any event (capped at ``at``)."""
    starts = [t for t, p in hours.items() if t < at and any(p["counts"].values())]
    return min(max(starts) + HOUR, at) if starts else None


def transition_at(
    transitions: list[dict[str, Any]], at: float, times: list[float]
) -> dict[str, Any] | None:
    """The latest transition at or before ``at`` (``times``: their ``updated_at``s)."""
    latest: dict[str, Any] | None = None
    for transition, ts in zip(transitions, times, strict=True):
        if ts <= at and (latest is None or transition["seq"] > latest["seq"]):
            latest = transition
    return latest


def _full(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: int(counts.get(k, 0)) for k in KINDS}
