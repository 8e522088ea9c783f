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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.models import SEVERITY_ORDER, Alert, AlertStatus, Kind, Severity
from services.aggregator.windows import parse_duration
from services.common.catalogue import Section
from services.common.yamlconfig import load_entries


class ThresholdRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    type: Literal["threshold"]
    description: str = ""
    kinds: Annotated[list[Kind], Field(min_length=1)]
    window: str = "24h"
    sections: list[str] = Field(
        default_factory=lambda: ["*"], description="Section ids or globs like `LV-*`."
    )
    countries: list[str] = Field(default_factory=list, description="Restrict to these countries.")
    severity: dict[Severity, Annotated[int, Field(ge=1)]] = Field(min_length=1)
    hysteresis: float = Field(0.1, ge=0.0, lt=1.0)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_duration(value)
        return value

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

    def ladder(self) -> list[tuple[str, int]]:
        """(severity, threshold) from the lowest to the highest."""
        return sorted(
            ((k.value, v) for k, v in self.severity.items()), key=lambda kv: SEVERITY_ORDER[kv[0]]
        )

    def applies_to(self, section: Section) -> bool:
        if self.countries and section.country not in self.countries:
            return False
        return any(fnmatch.fnmatchcase(section.id, pattern) for pattern in self.sections)

    def describe_value(self, value: int) -> str:
        kinds = " + ".join(k.value.replace("_", " ") for k in self.kinds)
        plural = "s" if value != 1 and not kinds.endswith("activity") else ""
        # The window as the operator wrote it ("24h" -> "24 h"), not re-normalised
        # to the largest unit (which would turn a 24 h rule into "1 d").
        window = self.window.strip()
        amount, unit = window[:-1], window[-1]
        return f"{value} {kinds}{plural} in {amount} {'min' if unit == 'm' else unit}"


Rule = ThresholdRule


def load_rules(path: Path) -> list[Rule]:
    return load_entries(path, "rules", ThresholdRule)


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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        return cls(**data)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def evaluate(
    rule: Rule,
    section: Section,
    value: int,
    episode: Episode | None,
    episodes_before: int,
    now: float,
) -> tuple[Episode | None, Alert | None]:
    """One rule on one section: the episode after ``value`` and the transition, if any.

    ``episodes_before`` counts this rule's earlier episodes on this section; it
    makes the new ``alert_id`` deterministic (``{rule}.{section}.{n}``).
    """
    held = level_for(value, rule.ladder(), episode.severity if episode else None, rule.hysteresis)
    stamp = _iso(now)
    if episode is None:
        if held is None:
            return None, None
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
        return new, _transition(rule, section, new, AlertStatus.firing)
    if held is None:
        episode.value = value
        episode.updated_at = stamp
        episode.seq += 1
        return None, _transition(rule, section, episode, AlertStatus.resolved, resolved_at=stamp)
    if held[0] == episode.severity:
        episode.value = value  # no transition: the value alone changed
        return episode, None
    episode.severity, episode.threshold = held
    episode.value = value
    episode.updated_at = stamp
    episode.seq += 1
    return episode, _transition(rule, section, episode, AlertStatus.firing)


def _transition(
    rule: Rule,
    section: Section,
    episode: Episode,
    status: AlertStatus,
    resolved_at: str | None = None,
) -> Alert:
    what = rule.describe_value(episode.value)
    if status is AlertStatus.firing:
        summary = f"{section.id}: {what} ≥ {episode.severity} threshold {episode.threshold}"
    else:
        lowest = rule.ladder()[0][1]
        floor = lowest * (1.0 - rule.hysteresis)
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
