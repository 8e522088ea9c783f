"""Alert rules (``deploy/config/rules.yaml``) and their evaluation, with no Faust import.

A ``threshold`` rule watches the rolling count of some kinds in a window for
the sections it selects, with a severity ladder (low < medium < high <
critical thresholds) and hysteresis: a level is entered when the value reaches
its threshold and left only when the value falls below ``threshold * (1 -
hysteresis)``. So a value that hovers at a threshold does not flap.

An alert is an *episode*: it starts ``firing``, may change severity, and ends
``resolved``. Each change is one transition message; nothing is emitted while
the severity stays the same.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from schemas.models import SEVERITY_ORDER, Alert, AlertStatus, Kind, Severity
from services.aggregator import windows
from services.aggregator.windows import parse_duration
from services.common.catalogue import Section
from services.common.yamlconfig import load_entries
from services.reports.discrepancy import DiscrepancyRule


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    description: str = ""
    sections: list[str] = Field(
        default_factory=lambda: ["*"], description="Section ids or globs like `LV-*`."
    )
    countries: list[str] = Field(default_factory=list, description="Restrict to these countries.")

    def applies_to(self, section: Section) -> bool:
        if self.countries and section.country not in self.countries:
            return False
        return any(fnmatch.fnmatchcase(section.id, pattern) for pattern in self.sections)


def _kinds_text(kinds: list[Kind], value: int) -> str:
    text = " + ".join(k.value.replace("_", " ") for k in kinds)
    plural = "s" if value != 1 and not text.endswith(("activity", "humanitarian")) else ""
    return f"{text}{plural}"


def _window_text(window: str) -> str:
    # The window as the operator wrote it ("24h" -> "24 h"), not re-normalised
    # to the largest unit (which would turn a 24 h rule into "1 d").
    window = window.strip()
    amount, unit = window[:-1], window[-1]
    return f"{amount} {'min' if unit == 'm' else unit}"


def _check_window(value: str) -> str:
    parse_duration(value)
    return value


@dataclass
class Measures:
    """What a rule may look at for one section at one moment."""

    buckets: windows.Buckets
    now: float
    bucket_seconds: int
    last_by_kind: dict[str, float]
    since: float

    _sums: dict[int, dict[str, int]] = field(default_factory=dict, repr=False)

    def window(self, window_seconds: int) -> dict[str, int]:
        """Counts per kind over the rolling window (computed once per moment:
        several rules and the published state ask for the same windows)."""
        counts = self._sums.get(window_seconds)
        if counts is None:
            counts = self._sums[window_seconds] = windows.window_sum(
                self.buckets, self.now, window_seconds, self.bucket_seconds
            )
        return counts

    def count(self, kinds: list[Kind], window_seconds: int) -> int:
        # A Kind is a StrEnum: it finds its value's key without ``.value``.
        return windows.kinds_sum(self.window(window_seconds), kinds)


Ladder = list[tuple[str, int]]


class ThresholdRule(_RuleBase):
    """Rolling count of some kinds in a window against a severity ladder."""

    type: Literal["threshold"]
    kinds: Annotated[list[Kind], Field(min_length=1)]
    window: str = "24h"
    severity: dict[Severity, Annotated[int, Field(ge=1)]] = Field(min_length=1)
    hysteresis: float = Field(0.1, ge=0.0, lt=1.0)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _check_window(value)

    # A field validator (not a model validator) so a config error names the
    # field 'severity' instead of the whole entry.
    @field_validator("severity")
    @classmethod
    def _ladder(cls, value: dict[Severity, int]) -> dict[Severity, int]:
        ordered = sorted(value.items(), key=lambda kv: SEVERITY_ORDER[kv[0]])
        values = [v for _, v in ordered]
        if values != sorted(values) or len(set(values)) != len(values):
            raise ValueError(
                "severity thresholds must grow strictly from low to critical, got "
                + ", ".join(f"{k.value}={v}" for k, v in ordered)
            )
        return value

    @property
    def window_seconds(self) -> int:
        return parse_duration(self.window)

    def ladder(self) -> Ladder:
        """(severity, threshold) from the lowest to the highest."""
        return sorted(
            ((k.value, v) for k, v in self.severity.items()), key=lambda kv: SEVERITY_ORDER[kv[0]]
        )

    def assess(self, m: Measures) -> tuple[int, Ladder]:
        return m.count(self.kinds, self.window_seconds), self.ladder()

    def describe_value(self, value: int) -> str:
        return f"{value} {_kinds_text(self.kinds, value)} in {_window_text(self.window)}"

    def firing_summary(self, section_id: str, value: int, severity: str, threshold: int) -> str:
        return f"{section_id}: {self.describe_value(value)} ≥ {severity} threshold {threshold}"


class AnyRule(_RuleBase):
    """One event of a kind is enough (military activity, humanitarian cases)."""

    type: Literal["any"]
    kinds: Annotated[list[Kind], Field(min_length=1)]
    window: str = Field("6h", description="How long the alert stays firing after the last event.")
    severity: Severity
    hysteresis: float = 0.0

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _check_window(value)

    @property
    def window_seconds(self) -> int:
        return parse_duration(self.window)

    def ladder(self) -> Ladder:
        return [(self.severity.value, 1)]

    def assess(self, m: Measures) -> tuple[int, Ladder]:
        return m.count(self.kinds, self.window_seconds), self.ladder()

    def describe_value(self, value: int) -> str:
        return f"{value} {_kinds_text(self.kinds, value)} in {_window_text(self.window)}"

    def firing_summary(self, section_id: str, value: int, severity: str, threshold: int) -> str:
        return f"{section_id}: {self.describe_value(value)}: one is enough for {severity}"


class SurgeRule(_RuleBase):
    """The last hour against the trailing hourly mean: last hour >= factor x mean and >= minimum."""

    type: Literal["surge"]
    kinds: Annotated[list[Kind], Field(min_length=1)]
    factor: float = Field(3.0, ge=1.0)
    minimum: int = Field(10, ge=1)
    baseline: str = Field("24h", description="Trailing window whose hourly mean is the baseline.")
    severity: Severity = Severity.high
    hysteresis: float = Field(0.2, ge=0.0, lt=1.0)

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, value: str) -> str:
        return _check_window(value)

    window: str = "1h"

    @property
    def window_seconds(self) -> int:
        return windows.HOUR

    def ladder(self) -> Ladder:
        """The static floor; the live threshold comes from :meth:`assess`."""
        return [(self.severity.value, self.minimum)]

    def assess(self, m: Measures) -> tuple[int, Ladder]:
        hour = self.window_seconds
        last_hour = m.count(self.kinds, hour)
        baseline_seconds = parse_duration(self.baseline)
        # The trailing baseline ends where the last hour starts.
        with_hour = m.count(self.kinds, baseline_seconds + hour)
        mean = (with_hour - last_hour) / (baseline_seconds / hour)
        threshold = max(self.minimum, math.ceil(self.factor * mean))
        return last_hour, [(self.severity.value, threshold)]

    def describe_value(self, value: int) -> str:
        return f"{value} {_kinds_text(self.kinds, value)} in the last hour"

    def firing_summary(self, section_id: str, value: int, severity: str, threshold: int) -> str:
        return (
            f"{section_id}: surge, {self.describe_value(value)} ≥ {threshold} "
            f"({self.factor:g} times the {_window_text(self.baseline)} hourly mean, at least "
            f"{self.minimum}): {severity}"
        )


class SilenceRule(_RuleBase):
    """No events of some kinds from a section with sensors for N minutes."""

    type: Literal["silence"]
    kinds: list[Kind] = Field(default_factory=lambda: list(Kind))
    minutes: int = Field(ge=1)
    severity: Severity = Severity.medium
    hysteresis: float = 0.0

    @property
    def window(self) -> str:
        return f"{self.minutes}m"

    @property
    def window_seconds(self) -> int:
        return self.minutes * 60

    def applies_to(self, section: Section) -> bool:
        return bool(section.sensors) and super().applies_to(section)

    def ladder(self) -> Ladder:
        return [(self.severity.value, self.minutes)]

    def assess(self, m: Measures) -> tuple[int, Ladder]:
        last = max((m.last_by_kind.get(k.value, 0.0) for k in self.kinds), default=0.0)
        silent_for = max(0.0, m.now - max(last, m.since))
        return int(silent_for // 60), [(self.severity.value, self.minutes)]

    def describe_value(self, value: int) -> str:
        kinds = " or ".join(k.value.replace("_", " ") for k in self.kinds)
        if len(self.kinds) == len(Kind):
            kinds = "event"
        return f"no {kinds} for {value} min"

    def firing_summary(self, section_id: str, value: int, severity: str, threshold: int) -> str:
        return f"{section_id}: {self.describe_value(value)} (sensors silent ≥ {threshold} min)"


Rule = ThresholdRule | AnyRule | SurgeRule | SilenceRule


class _RuleEntry(RootModel[Annotated[Rule | DiscrepancyRule, Field(discriminator="type")]]):
    @property
    def id(self) -> str:
        return self.root.id


def load_rules(path: Path) -> list[Rule]:
    """The per-section rules of ``path`` (what the section engine evaluates)."""
    return [
        entry.root
        for entry in load_entries(path, "rules", _RuleEntry)
        if not isinstance(entry.root, DiscrepancyRule)
    ]


def load_discrepancy_rules(path: Path) -> list[DiscrepancyRule]:
    """The ``report_discrepancy`` rules of ``path`` (official figures vs field counts)."""
    return [
        entry.root
        for entry in load_entries(path, "rules", _RuleEntry)
        if isinstance(entry.root, DiscrepancyRule)
    ]


def level_for(
    value: int, ladder: list[tuple[str, int]], current: str | None, hysteresis: float
) -> tuple[str, int] | None:
    """The severity (and its threshold) that ``value`` holds, given the current one.

    Levels at or below ``current`` are kept while ``value >= t * (1 - hysteresis)``;
    higher levels need ``value >= t``.
    """
    current_rank = SEVERITY_ORDER[current] if current is not None else -1
    held: tuple[str, int] | None = None
    for severity, threshold in ladder:
        if SEVERITY_ORDER[severity] <= current_rank:
            reached = value >= threshold * (1.0 - hysteresis)
        else:
            reached = value >= threshold
        if reached:
            held = (severity, threshold)
    return held


@dataclass
class Episode:
    """The firing alert of one rule on one section, as kept in the section state."""

    alert_id: str
    severity: str
    threshold: int
    value: int
    started_at: str
    updated_at: str
    seq: int

    def to_dict(self) -> dict[str, Any]:
        # Flat fields of plain values: a shallow copy (asdict's deep copy cost more
        # than the rest of a section update).
        return {f.name: getattr(self, f.name) for f in _EPISODE_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        return cls(**data)


_EPISODE_FIELDS = fields(Episode)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def evaluate(
    rule: Rule,
    section: Section,
    value: int,
    episode: Episode | None,
    episodes_before: int,
    now: float,
    ladder: Ladder | None = None,
) -> tuple[Episode | None, Alert | None]:
    """One rule on one section: the episode after ``value`` and the transition, if any.

    ``episodes_before`` counts this rule's earlier episodes on this section; it
    makes the new ``alert_id`` deterministic (``{rule}.{section}.{n}``).
    """
    if ladder is None:
        ladder = (
            rule.assess(Measures({}, now, windows.HOUR, {}, now))[1]
            if isinstance(rule, SurgeRule | SilenceRule)
            else rule.ladder()
        )
    held = level_for(value, ladder, episode.severity if episode else None, rule.hysteresis)
    if episode is None:
        if held is None:
            return None, None
        stamp = _iso(now)
        severity, threshold = held
        new = Episode(
            alert_id=f"{rule.id}.{section.id}.{episodes_before + 1}",
            severity=severity,
            threshold=threshold,
            value=value,
            started_at=stamp,
            updated_at=stamp,
            seq=1,
        )
        return new, _transition(rule, section, new, AlertStatus.firing, ladder)
    if held is None:
        stamp = _iso(now)
        episode.value = value
        episode.updated_at = stamp
        episode.seq += 1
        return None, _transition(
            rule, section, episode, AlertStatus.resolved, ladder, resolved_at=stamp
        )
    if held[0] == episode.severity:
        episode.value = value  # no transition: the value alone changed
        return episode, None
    episode.severity, episode.threshold = held
    episode.value = value
    episode.updated_at = _iso(now)
    episode.seq += 1
    return episode, _transition(rule, section, episode, AlertStatus.firing, ladder)


def _transition(
    rule: Rule,
    section: Section,
    episode: Episode,
    status: AlertStatus,
    ladder: Ladder,
    resolved_at: str | None = None,
) -> Alert:
    if status is AlertStatus.firing:
        summary = rule.firing_summary(
            section.id, episode.value, episode.severity, episode.threshold
        )
    else:
        lowest = ladder[0][1]
        floor = lowest * (1.0 - rule.hysteresis)
        what = rule.describe_value(episode.value)
        summary = f"{section.id}: {what}, below {floor:g} (resolve level of {lowest}): resolved"
    return Alert(
        alert_id=episode.alert_id,
        seq=episode.seq,
        rule=rule.id,
        section_id=section.id,
        country=section.country,
        status=status,
        severity=Severity(episode.severity),
        value=episode.value,
        threshold=episode.threshold,
        window=rule.window,
        started_at=datetime.fromisoformat(episode.started_at),
        updated_at=datetime.fromisoformat(episode.updated_at),
        resolved_at=datetime.fromisoformat(resolved_at) if resolved_at else None,
        summary=summary,
    )
