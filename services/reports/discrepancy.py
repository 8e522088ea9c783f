"""Official figures against field counts: the ``report_discrepancy`` rule (domain only).

An official figure for a country and period is compared with the sum of the
field counts of that country's sections over the same period, taken from the
hourly buckets of the sections' published states (``bw.section-state``): each
state carries its last 24, and the assessor keeps every bucket it has seen for
``HELD`` (7 days and the 2 h grace, what the aggregator itself holds), so a day,
weekend, week or ``N days`` figure (N <= 7) is compared hour by hour. It disagrees when the two differ by more than
``ratio`` of the larger *and* by at least ``minimum``. A qualifier narrows
that: "more than 200" only disagrees with fewer in the field, "up to 30" only
with more, "no attempts" with ``minimum`` or more.

Only periods the held buckets cover are compared; a period that reaches
beyond them (a month, a year, a cumulative total, a week whose first hours the
assessor has not seen since its restart) is skipped with the reason in a
:class:`NotCompared`, never compared against a partial count. A 7-day figure
whose hours are not all held still falls back on the rolling 7 days of a state
updated when the period ends.
No Faust import: the plumbing (a worker that reads states and analyses and
publishes alert transitions) calls :func:`evaluate` and :class:`Tracker`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HOUR = timedelta(hours=1)
# A state's rolling 7 d ends at its update time; a week figure ending within
# this much of it, and spanning 7 d, is compared with it.
WEEK_TOLERANCE = timedelta(hours=2)
# The field data the system holds: 7 days of hourly buckets and the grace period.
HELD = timedelta(days=7, hours=2)

FIELD_METRICS = (
    "detection",
    "crossing_attempt",
    "apprehension",
    "incident",
    "military_activity",
    "humanitarian",
)

# section id -> {bucket start (epoch seconds) -> hourly point}
History = Mapping[str, Mapping[float, Mapping[str, Any]]]


class DiscrepancyRule(BaseModel):
    """One ``report_discrepancy`` entry of ``rules.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    type: Literal["report_discrepancy"]
    description: str = ""
    countries: list[str] = Field(default_factory=lambda: ["LV", "LT", "PL"])
    metric: Literal[
        "detection",
        "crossing_attempt",
        "apprehension",
        "incident",
        "military_activity",
        "humanitarian",
    ] = "crossing_attempt"
    source_types: list[str] = Field(default_factory=lambda: ["official"], min_length=1)
    ratio: float = Field(0.5, gt=0, lt=1, description="Relative difference that disagrees.")
    minimum: int = Field(10, ge=1, description="Absolute difference that disagrees.")
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    max_age_hours: float = Field(48, gt=0, description="Figures older than this are not compared.")


@dataclass(frozen=True, slots=True)
class Comparison:
    rule: str
    country: str
    metric: str
    report_id: str
    official: int
    qualifier: str
    field: int
    period_label: str
    start: datetime
    end: datetime
    disagrees: bool

    def summary(self) -> str:
        verdict = "differs from" if self.disagrees else "agrees with"
        return (
            f"{self.country} official {self.metric} {self.qualifier} {self.official} "
            f"({self.period_label}, report {self.report_id}) {verdict} "
            f"{self.field} counted in the field"
        )


@dataclass(frozen=True, slots=True)
class NotCompared:
    """An official figure the rule could not compare, and why (kept as evidence)."""

    rule: str
    country: str
    metric: str
    report_id: str
    figure: int  # its index in the analysis
    period_label: str
    reason: str


def beyond_held(start: datetime, end: datetime) -> str | None:
    """Why a period cannot be compared with the field counts whatever is held: it is
    longer than what the system keeps (None: it may be)."""
    span = end - start
    if span > HELD:
        return (
            f"the period spans {span / timedelta(days=1):.1f} days, beyond the "
            f"{HELD / timedelta(days=1):.0f} days of hourly field counts held"
        )
    return None


def not_comparable(figure: Mapping[str, Any]) -> str | None:
    """Why an analysed figure can never be compared with the field counts (its metric
    is not a field count, its period is unknown or longer than what is held), as the
    analysis records it; None when it can be, given the hours (see :func:`field_count`)."""
    if figure["metric"] not in FIELD_METRICS:
        return f"{figure['metric']} is not counted in the field"
    period = figure["period"]
    if not period.get("start") or not period.get("end"):
        return f"the period '{period['label']}' has no known start and end"
    start, end = period["start"], period["end"]
    return beyond_held(
        start if isinstance(start, datetime) else datetime.fromisoformat(start),
        end if isinstance(end, datetime) else datetime.fromisoformat(end),
    )


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _width(hourly: list[Mapping[str, Any]]) -> float:
    if len(hourly) >= 2:
        width = _ts(hourly[-1]["start"]) - _ts(hourly[-2]["start"])
        if width > 0:
            return width
    return HOUR.total_seconds()


def field_count(
    states: Iterable[Mapping[str, Any]],
    country: str,
    metric: str,
    start: datetime,
    end: datetime,
    history: History | None = None,
) -> int | str:
    """Sum of ``metric`` over ``[start, end)`` for the country's sections, from their
    hourly buckets (the states' own and ``history``), or why it cannot be had.

    A bucket counts from when it starts (the current hour is partial; one that
    starts up to half an hour before ``start`` belongs to the period). Every
    bucket of the period must be held, except its first (counted when held) and
    those after a section's newest one when that ends within the hour before
    ``end``."""
    span = end - start
    too_long = beyond_held(start, end)
    if too_long is not None:
        return too_long
    total = 0
    covered = False
    start_ts, end_ts = start.timestamp(), end.timestamp()
    for state in states:
        if state.get("country") != country:
            continue
        sid = str(state.get("section_id", "?"))
        hourly = list(state.get("hourly") or [])
        held: dict[float, Mapping[str, Any]] = dict((history or {}).get(sid, {}))
        held.update((_ts(p["start"]), p) for p in hourly)
        if not held:
            return f"{sid}: no hourly field counts held"
        width = _width(hourly)
        newest = max(held)
        first = math.ceil((start_ts - width / 2) / width) * width
        needed = [first + i * width for i in range(max(0, math.ceil((end_ts - first) / width)))]
        if newest + width < end_ts - HOUR.total_seconds():
            missing = len(needed)
        else:
            # The period's first bucket counts when held but is not required: a
            # state's 24 buckets end with the current, partial hour, so a day
            # published at 09:13 (or 09:00) begins in yesterday's 09:00 bucket,
            # which the newest state has just left behind (an hour's leniency, as
            # the comparison always had).
            missing = sum(1 for t in needed[1:] if t <= newest and t not in held)
        if missing:
            if abs(span - timedelta(days=7)) <= WEEK_TOLERANCE and "counts_7d" in state:
                updated = datetime.fromisoformat(state["updated_at"])
                if abs(updated - end) <= WEEK_TOLERANCE:
                    total += int(state["counts_7d"].get(metric, 0))
                    covered = True
                    continue
            since = datetime.fromtimestamp(min(held), start.tzinfo).isoformat()
            return (
                f"{sid}: {missing} of the period's {len(needed)} hourly buckets are not "
                f"held (held from {since})"
            )
        total += sum(int(held[t]["counts"].get(metric, 0)) for t in needed if t in held)
        covered = True
    return total if covered else f"no section state of {country} yet"


def field_total(
    states: Iterable[Mapping[str, Any]],
    country: str,
    metric: str,
    start: datetime,
    end: datetime,
    history: History | None = None,
) -> int | None:
    """:func:`field_count`, None when the period is not covered."""
    counted = field_count(states, country, metric, start, end, history)
    return counted if isinstance(counted, int) else None


def disagrees(rule: DiscrepancyRule, official: int, qualifier: str, field_count: int) -> bool:
    diff = abs(official - field_count)
    if diff < rule.minimum:
        return False
    if qualifier == "none":
        return field_count >= rule.minimum
    if qualifier == "more_than" and field_count >= official:
        return False
    if qualifier == "at_most" and field_count <= official:
        return False
    return diff > rule.ratio * max(official, field_count)


def evaluate(
    rule: DiscrepancyRule,
    analysis: Mapping[str, Any],
    states: Iterable[Mapping[str, Any]],
    now: datetime,
    history: History | None = None,
    skipped: list[NotCompared] | None = None,
) -> list[Comparison]:
    """The comparisons one report analysis allows under ``rule``; each figure of the
    rule's metric and countries that cannot be compared goes to ``skipped`` with its
    reason (figures past ``max_age_hours`` are simply too old, and not listed)."""
    if analysis.get("source_type") not in rule.source_types:
        return []
    states = list(states)
    out = []
    for index, fig in enumerate(analysis.get("figures", [])):
        area, metric = fig["area"], fig["metric"]
        period = fig["period"]
        if area not in rule.countries or metric != rule.metric:
            continue
        reason: str | None = None
        counted: int | str = 0
        if not period.get("start") or not period.get("end"):
            reason = not_comparable(fig)
        else:
            start = datetime.fromisoformat(period["start"])
            end = datetime.fromisoformat(period["end"])
            if now - end > timedelta(hours=rule.max_age_hours):
                continue
            counted = field_count(states, area, metric, start, end, history)
            if isinstance(counted, str):
                reason = counted
        if reason is not None or isinstance(counted, str):
            if skipped is not None:
                skipped.append(
                    NotCompared(
                        rule.id,
                        area,
                        metric,
                        str(analysis["report_id"]),
                        index,
                        str(period["label"]),
                        reason or str(counted),
                    )
                )
            continue
        out.append(
            Comparison(
                rule=rule.id,
                country=area,
                metric=metric,
                report_id=str(analysis["report_id"]),
                official=int(fig["value"]),
                qualifier=str(fig["qualifier"]),
                field=counted,
                period_label=str(period["label"]),
                start=start,
                end=end,
                disagrees=disagrees(rule, int(fig["value"]), str(fig["qualifier"]), counted),
            )
        )
    return out


@dataclass
class _Open:
    episode: int
    seq: int
    started_at: datetime
    last: Comparison


@dataclass
class Tracker:
    """Alert episodes of discrepancy rules per (rule, country, metric); a rule has one metric.

    The newest comparison decides: a disagreement opens (or updates) an
    episode, an agreement resolves it. Transitions are plain dicts shaped like
    :class:`schemas.models.Alert`; the country-level alert uses the
    pseudo-section id ``{country}-ALL`` (see ``schemas.models.Alert``): its
    ``country`` is that country, so the API, the feeds, country-scoped tokens and
    Alertmanager treat it as that country's.
    """

    severity: dict[str, str]
    open: dict[tuple[str, str, str], _Open] = field(default_factory=dict)
    episodes: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def restore(self, alert: Mapping[str, Any], metric: str) -> None:
        """Take up an episode from a transition already on ``bw.alerts`` (after a restart)."""
        country = str(alert["country"])
        key = (str(alert["rule"]), country, metric)
        episode = int(str(alert["alert_id"]).rsplit(".", 1)[1])
        if episode < self.episodes.get(key, 0):
            return
        self.episodes[key] = episode
        current = self.open.get(key)
        if current is not None and current.episode == episode and current.seq >= alert["seq"]:
            return
        if alert["status"] == "resolved":
            self.open.pop(key, None)
            return
        last = Comparison(
            rule=key[0],
            country=country,
            metric=metric,
            report_id="",
            official=int(alert["threshold"]),
            qualifier="exact",
            field=int(alert["value"]),
            period_label=str(alert["window"]),
            start=datetime.fromisoformat(str(alert["started_at"])),
            end=datetime.fromisoformat(str(alert["updated_at"])),
            disagrees=True,
        )
        self.open[key] = _Open(
            episode, int(alert["seq"]), datetime.fromisoformat(str(alert["started_at"])), last
        )

    def apply(self, c: Comparison, now: datetime) -> dict[str, Any] | None:
        key = (c.rule, c.country, c.metric)
        current = self.open.get(key)
        if c.disagrees:
            if current is None:
                n = self.episodes.get(key, 0) + 1
                self.episodes[key] = n
                current = self.open[key] = _Open(n, 0, now, c)
            elif (current.last.official, current.last.field) == (c.official, c.field):
                return None
            current.seq += 1
            current.last = c
            return self._alert(key, current, "firing", now, None)
        if current is None:
            return None
        current.seq += 1
        current.last = c
        del self.open[key]
        return self._alert(key, current, "resolved", now, now)

    def lapse(
        self, rule: str, country: str, metric: str, now: datetime, why: str
    ) -> dict[str, Any] | None:
        """Resolve the open episode of (rule, country, metric), if any, because no
        official figure can be compared any more (``why``): the newest figure aged
        past the rule's ``max_age_hours``, or its hours are no longer held. Without
        this an episode whose figure can no longer be checked stayed firing."""
        key = (rule, country, metric)
        current = self.open.pop(key, None)
        if current is None:
            return None
        current.seq += 1
        return self._alert(
            key, current, "resolved", now, now, summary=f"{current.last.summary()}; {why}: resolved"
        )

    def _alert(
        self,
        key: tuple[str, str, str],
        ep: _Open,
        status: str,
        now: datetime,
        resolved_at: datetime | None,
        summary: str | None = None,
    ) -> dict[str, Any]:
        rule, country, _metric = key
        c = ep.last
        return {
            "schema_version": 1,
            "alert_id": f"{rule}.{country}-ALL.{ep.episode}",
            "seq": ep.seq,
            "rule": rule,
            "section_id": f"{country}-ALL",
            "country": country,
            "status": status,
            "severity": self.severity.get(rule, "medium"),
            "value": c.field,
            "threshold": c.official,
            "window": c.period_label,
            "started_at": ep.started_at.isoformat(),
            "updated_at": now.isoformat(),
            "resolved_at": resolved_at.isoformat() if resolved_at else None,
            "summary": summary or c.summary(),
        }
