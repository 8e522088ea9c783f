"""Official figures against field counts: the ``report_discrepancy`` rule (domain only).

An official figure for a country and period is compared with the sum of the
field counts of that country's sections over the same period, taken from the
sections' published states (``bw.section-state``: the last 24 hourly buckets
and the rolling 7 days). It disagrees when the two differ by more than
``ratio`` of the larger *and* by at least ``minimum``. A qualifier narrows
that: "more than 200" only disagrees with fewer in the field, "up to 30" only
with more, "no attempts" with ``minimum`` or more.

Only periods the states cover are compared (up to 24 h inside the hourly
series, or the rolling 7 days); anything else is skipped, never guessed.
No Faust import: the plumbing (a worker that reads states and analyses and
publishes alert transitions) calls :func:`evaluate` and :class:`Tracker`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HOUR = timedelta(hours=1)
# A state's rolling 7 d ends at its update time; a week figure ending within
# this much of it, and spanning 7 d, is compared with it.
WEEK_TOLERANCE = timedelta(hours=2)


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


def field_total(
    states: Iterable[Mapping[str, Any]], country: str, metric: str, start: datetime, end: datetime
) -> int | None:
    """Sum of ``metric`` over ``[start, end)`` for the country's sections, or None
    when the states do not cover that period."""
    total = 0
    covered = False
    span = end - start
    for state in states:
        if state.get("country") != country:
            continue
        hourly = state.get("hourly") or []
        if span <= timedelta(hours=24) + HOUR and hourly:
            first = datetime.fromisoformat(hourly[0]["start"])
            last_end = datetime.fromisoformat(hourly[-1]["start"]) + HOUR
            if first > start + HOUR or last_end < end - HOUR:
                return None
            for point in hourly:
                bucket = datetime.fromisoformat(point["start"])
                # The current hour is partial: a bucket counts from when it starts.
                if start - HOUR / 2 <= bucket < end:
                    total += int(point["counts"].get(metric, 0))
            covered = True
        elif abs(span - timedelta(days=7)) <= WEEK_TOLERANCE:
            updated = datetime.fromisoformat(state["updated_at"])
            if abs(updated - end) > WEEK_TOLERANCE:
                return None
            total += int(state["counts_7d"].get(metric, 0))
            covered = True
        else:
            return None
    return total if covered else None


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
) -> list[Comparison]:
    """The comparisons one report analysis allows under ``rule``."""
    if analysis.get("source_type") not in rule.source_types:
        return []
    states = list(states)
    out = []
    for fig in analysis.get("figures", []):
        area, metric = fig["area"], fig["metric"]
        period = fig["period"]
        if area not in rule.countries or metric != rule.metric:
            continue
        if not period.get("start") or not period.get("end"):
            continue
        start = datetime.fromisoformat(period["start"])
        end = datetime.fromisoformat(period["end"])
        if now - end > timedelta(hours=rule.max_age_hours):
            continue
        counted = field_total(states, area, metric, start, end)
        if counted is None:
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
    :class:`schemas.models.Alert`; the country-level alert uses the section id
    ``{country}-ALL`` (the Alert contract requires one).
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

    def _alert(
        self,
        key: tuple[str, str, str],
        ep: _Open,
        status: str,
        now: datetime,
        resolved_at: datetime | None,
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
            "summary": c.summary(),
        }
