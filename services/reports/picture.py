"""What the assessor knows: section states, report analyses, firing alerts (domain only).

Fed from ``bw.section-state``, ``bw.report-analysis``, ``bw.alerts`` and
``bw.assessment`` (each read whole by the worker that owns a country), it
decides the discrepancy alert transitions and the assessments to publish.
Bounded: one state per section, analyses inside the longest window (at most
``max_analyses``), firing alerts only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from services.reports.assessment import AssessmentConfig, assess
from services.reports.discrepancy import DiscrepancyRule, Tracker, evaluate


def _without_time(assessment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in assessment.items() if k != "assessed_at"}


class Picture:
    def __init__(
        self,
        rules: list[DiscrepancyRule],
        config: AssessmentConfig | None = None,
        max_analyses: int = 5000,
    ) -> None:
        self.rules = {r.id: r for r in rules}
        self.config = config or AssessmentConfig()
        self.max_analyses = max_analyses
        self.states: dict[str, dict[str, Any]] = {}
        self.analyses: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.firing: dict[str, dict[str, Any]] = {}
        self.published: dict[str, dict[str, Any]] = {}
        self.tracker = Tracker(severity={r.id: r.severity for r in rules})

    def apply_state(self, state: dict[str, Any]) -> None:
        current = self.states.get(state["section_id"])
        if current is None or current["version"] < state["version"]:
            self.states[state["section_id"]] = state

    def apply_analysis(self, analysis: dict[str, Any]) -> None:
        self.analyses.pop(analysis["report_id"], None)
        self.analyses[analysis["report_id"]] = analysis
        while len(self.analyses) > self.max_analyses:
            self.analyses.popitem(last=False)

    def apply_alert(self, alert: dict[str, Any]) -> None:
        if alert["status"] == "firing":
            self.firing[alert["alert_id"]] = alert
        else:
            self.firing.pop(alert["alert_id"], None)
        rule = self.rules.get(alert["rule"])
        if rule is not None:
            self.tracker.restore(alert, rule.metric)

    def apply_assessment(self, assessment: dict[str, Any]) -> None:
        self.published[assessment["country"]] = _without_time(assessment)

    def _prune(self, now: datetime) -> None:
        hours = max([self.config.window_hours, *(r.max_age_hours for r in self.rules.values())])
        oldest = now - timedelta(hours=hours + 24)
        for rid in [
            rid
            for rid, a in self.analyses.items()
            if datetime.fromisoformat(a["published_at"]) < oldest
        ]:
            del self.analyses[rid]

    def discrepancies(self, now: datetime, countries: Iterable[str]) -> list[dict[str, Any]]:
        """Alert transitions: the newest comparable official figure of each rule and country."""
        owned = set(countries)
        out = []
        by_time = sorted(self.analyses.values(), key=lambda a: a["published_at"], reverse=True)
        states = list(self.states.values())
        for rule in self.rules.values():
            for country in sorted(owned & set(rule.countries)):
                # Cheap first: only the rule's sources with a figure of its metric and country.
                candidates = (
                    a
                    for a in by_time
                    if a.get("source_type") in rule.source_types
                    and any(
                        f["metric"] == rule.metric and f["area"] == country
                        for f in a.get("figures", ())
                    )
                )
                for analysis in candidates:
                    found = [
                        c for c in evaluate(rule, analysis, states, now) if c.country == country
                    ]
                    if found:
                        transition = self.tracker.apply(found[0], now)
                        if transition is not None:
                            self.apply_alert(transition)
                            out.append(transition)
                        break
        return out

    def assessments(self, now: datetime, countries: Iterable[str]) -> list[dict[str, Any]]:
        """Assessments that changed since the last published one."""
        self._prune(now)
        out = []
        for country in sorted(set(countries)):
            a = assess(
                country,
                self.analyses.values(),
                self.states.values(),
                self.firing.values(),
                now,
                self.config,
            ).to_dict()
            if self.published.get(country) != _without_time(a):
                self.published[country] = _without_time(a)
                out.append(a)
        return out
