"""Closure-criteria assessment per country (domain only; decision support).

Governments weigh named criteria before restricting or closing a border:
military risk, hostile intelligence activity, information attacks, border
incidents, migration pressure, and the humanitarian situation. Each factor
gets a level (none, low, elevated, high, critical) from the reports' signals
and the field counts in a window, with its evidence: report ids, alert ids,
counts. The overall stage says which range of measures the criteria that are
met correspond to; the wording states criteria, never what to decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LEVELS = ("none", "low", "elevated", "high", "critical")
STAGES = (
    "monitoring",
    "restrictions",
    "crossing_point_closure",
    "full_closure_criteria_met",
)
STAGE_TEXT = {
    "monitoring": "No criterion is met beyond monitoring.",
    "restrictions": "Criteria met correspond to restrictions on people, transport or goods.",
    "crossing_point_closure": "Criteria met correspond to the closure of crossing points.",
    "full_closure_criteria_met": "The criteria named for a full closure are met.",
}
MAX_EVIDENCE = 20
FACTORS = (
    "military_risk",
    "intelligence_activity",
    "disinformation",
    "border_incidents",
    "migration_pressure",
    "humanitarian_situation",
)
# Which report signals and which field kinds feed each factor.
FACTOR_SIGNALS: dict[str, tuple[str, ...]] = {
    "military_risk": ("military_activity", "hybrid_threat"),
    "intelligence_activity": ("intelligence_activity",),
    "disinformation": ("disinformation",),
    "border_incidents": ("incident",),
    "migration_pressure": (),
    "humanitarian_situation": ("humanitarian_concern",),
}
FACTOR_KINDS: dict[str, str] = {
    "military_risk": "military_activity",
    "border_incidents": "incident",
    "humanitarian_situation": "humanitarian",
}


class Ladder(BaseModel):
    """Minimum score for each level above ``none``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(1, gt=0)
    elevated: float = Field(2, gt=0)
    high: float = Field(4, gt=0)
    critical: float = Field(8, gt=0)

    def level(self, score: float) -> str:
        out = "none"
        for name in ("low", "elevated", "high", "critical"):
            if score >= getattr(self, name):
                out = name
        return out


class AssessmentConfig(BaseModel):
    """How signals and counts become levels (operator data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_hours: float = Field(72, gt=0)
    # A signal from an official source weighs this much; press, NGO, analysis 1.
    official_weight: float = Field(2, gt=0)
    # Each field event of the factor's kind in the last 24 h adds this to the score.
    field_event_weight: float = Field(0.5, ge=0)
    signals: Ladder = Ladder()
    # Migration pressure: each section's crossing attempts in the last 24 h over its
    # own daily baseline (its 7 d count / 7); the country takes its highest section,
    # among those with at least ``pressure_minimum`` attempts in 24 h.
    pressure: Ladder = Ladder(low=1.0, elevated=1.5, high=2.5, critical=4.0)
    pressure_minimum: int = Field(10, ge=0)


@dataclass(frozen=True, slots=True)
class Factor:
    factor: str
    level: str
    score: float
    reports: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "factor": self.factor,
            "level": self.level,
            "score": round(self.score, 2),
            "evidence": {
                "reports": list(self.reports),
                "alerts": list(self.alerts),
                "counts": dict(self.counts),
            },
        }


@dataclass(frozen=True, slots=True)
class Assessment:
    country: str
    stage: str
    factors: tuple[Factor, ...]
    measures_reported: tuple[str, ...]
    assessed_at: datetime

    @property
    def criteria_met(self) -> list[str]:
        return [f"{f.factor} ({f.level})" for f in self.factors if _rank(f.level) >= _rank("high")]

    def to_dict(self) -> dict[str, Any]:
        met = self.criteria_met
        return {
            "schema_version": 1,
            "country": self.country,
            "stage": self.stage,
            "summary": STAGE_TEXT[self.stage]
            + (f" Criteria at high or above: {', '.join(met)}." if met else ""),
            "factors": [f.to_dict() for f in self.factors],
            "measures_reported": list(self.measures_reported),
            "assessed_at": self.assessed_at.isoformat(),
        }


def _rank(level: str) -> int:
    return LEVELS.index(level)


def stage_for(levels: Mapping[str, str]) -> str:
    """The range of measures the factor levels correspond to."""
    high = [f for f, lv in levels.items() if _rank(lv) >= _rank("high")]
    critical = [f for f, lv in levels.items() if lv == "critical"]
    security = {"military_risk", "intelligence_activity", "border_incidents"}
    if len(high) >= 3 and (set(high) & security) and critical:
        return "full_closure_criteria_met"
    if len(high) >= 2 or critical:
        return "crossing_point_closure"
    if any(_rank(lv) >= _rank("elevated") for lv in levels.values()):
        return "restrictions"
    return "monitoring"


def assess(
    country: str,
    analyses: Iterable[Mapping[str, Any]],
    states: Iterable[Mapping[str, Any]],
    firing_alerts: Iterable[Mapping[str, Any]],
    now: datetime,
    config: AssessmentConfig | None = None,
) -> Assessment:
    """The assessment of ``country`` from report analyses (``ReportAnalysis`` dicts),
    section states (``SectionState`` dicts) and firing alerts (``Alert`` dicts)."""
    cfg = config or AssessmentConfig()
    since = now - timedelta(hours=cfg.window_hours)
    score: dict[str, float] = dict.fromkeys(FACTORS, 0.0)
    reports: dict[str, list[str]] = {f: [] for f in FACTORS}
    measures: set[str] = set()
    for a in analyses:
        published = datetime.fromisoformat(str(a["published_at"]))
        if not since <= published <= now:
            continue
        weight = cfg.official_weight if a.get("source_type") == "official" else 1.0
        found = {s["signal"] for s in a.get("signals", []) if s.get("area") in (country, "EU-BY")}
        measures |= found & {"state_of_emergency", "closure_declared", "closure_considered"}
        for factor, signals in FACTOR_SIGNALS.items():
            if found & set(signals):
                score[factor] += weight
                reports[factor].append(str(a["report_id"]))
    counts_24h: dict[str, int] = {}
    counts_7d: dict[str, int] = {}
    # (ratio, section, 24 h, 7 d) of the section furthest above its own baseline.
    top: tuple[float, str, int, int] | None = None
    for st in states:
        if st.get("country") != country:
            continue
        last = int(st["counts_24h"].get("crossing_attempt", 0))
        week = int(st["counts_7d"].get("crossing_attempt", 0))
        ratio = last / (week / 7) if week > 0 else 0.0
        if last >= cfg.pressure_minimum and (top is None or ratio > top[0]):
            top = (ratio, str(st["section_id"]), last, week)
        for kind, n in st["counts_24h"].items():
            counts_24h[kind] = counts_24h.get(kind, 0) + int(n)
        for kind, n in st["counts_7d"].items():
            counts_7d[kind] = counts_7d.get(kind, 0) + int(n)
    alerts_by_kind: dict[str, list[str]] = {}
    for al in firing_alerts:
        if al.get("country") == country and al.get("status") == "firing":
            alerts_by_kind.setdefault(str(al.get("rule", "")), []).append(str(al["alert_id"]))
    factors = []
    for factor in FACTORS:
        counts: dict[str, int] = {}
        if factor == "migration_pressure":
            counts = {
                "crossing_attempt_24h": counts_24h.get("crossing_attempt", 0),
                "crossing_attempt_7d": counts_7d.get("crossing_attempt", 0),
            }
            value = 0.0
            if top is not None:
                value = top[0]
                counts[f"{top[1]}_crossing_attempt_24h"] = top[2]
                counts[f"{top[1]}_crossing_attempt_7d"] = top[3]
            level = cfg.pressure.level(value)
            alert_ids = tuple(
                a for rule, ids in alerts_by_kind.items() if "crossing" in rule for a in ids
            )
        else:
            kind = FACTOR_KINDS.get(factor)
            value = score[factor]
            if kind:
                n = counts_24h.get(kind, 0)
                counts = {f"{kind}_24h": n}
                value += cfg.field_event_weight * n
            level = cfg.signals.level(value)
            alert_ids = tuple(
                a
                for rule, ids in alerts_by_kind.items()
                if kind and kind.split("_")[0] in rule
                for a in ids
            )
        factors.append(
            Factor(
                factor,
                level,
                value,
                # The newest few: the evidence stays small whatever the volume.
                tuple(dict.fromkeys(reports[factor]))[-MAX_EVIDENCE:],
                alert_ids[:MAX_EVIDENCE],
                counts,
            )
        )
    stage = stage_for({f.factor: f.level for f in factors})
    return Assessment(country, stage, tuple(factors), tuple(sorted(measures)), now)
