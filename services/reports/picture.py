"""What the assessor knows: section states, report analyses, firing alerts (domain only).

Fed from ``bw.section-state``, ``bw.report-analysis``, ``bw.alerts`` and
``bw.assessment`` (each read whole by the worker that owns a country), it
decides the discrepancy alert transitions and the assessments to publish.
Bounded: one state per section, analyses inside the longest window (at most
``max_analyses``), firing alerts only, and per section the hourly buckets of
the last ``HELD`` (7 d + grace).

**Hourly history.** A state carries only its last 24 hourly buckets, so a
weekend, week or ``N days`` figure needs older hours: the picture keeps, per
section, every bucket it has seen in the states it applied (the newest state's
copy of a bucket wins) and in ``bw.section-hours`` (the hours states no longer
carry; those records win over states) for ``HELD``, in memory. Both topics are
read whole at start-up, so the hours survive a restart. A period whose hours
are not all held is not compared, with the reason kept in
:attr:`Picture.not_compared` and logged, never compared against a partial
count; an open discrepancy episode whose figures can no longer be compared
resolves, saying why (``Tracker.lapse``).

**States decoded when read.** A worker receives every state every section
publishes (one per update: ~200 a second in a surge), but reads the picture
only on its timer. :meth:`offer_state` keeps a state undecoded, with the
version its record's header gives, and only the newest per section; the
picture decodes and applies what it holds before it is read. Applying only
the newest state of a section loses nothing: a newer state's 24 hours replace
an older one's, and an hour that left a state's 24 on the way is in
``bw.section-hours``, whose records win over any state's copy in either order.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson

from services.reports.assessment import AssessmentConfig, assess
from services.reports.discrepancy import HELD, DiscrepancyRule, NotCompared, Tracker, evaluate

log = logging.getLogger(__name__)
MAX_NOT_COMPARED = 1000


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
        # section id -> {bucket start (epoch s) -> hourly point}, for HELD.
        self.history: dict[str, dict[float, dict[str, Any]]] = {}
        # (rule, report id, figure index) -> why that official figure is not compared.
        self.not_compared: OrderedDict[tuple[str, str, int], NotCompared] = OrderedDict()
        # section id -> (version, encoded state, where it came from): offered, not applied.
        self._offered: dict[str, tuple[int, bytes, str]] = {}

    def offer_state(self, section_id: str, version: int, raw: bytes, origin: str = "") -> None:
        """A section's state, encoded, whose ``version`` is known without decoding
        it (from its record's header): kept if it is the newest seen of the
        section, and applied (decoded) before the picture is next read.
        ``origin`` (e.g. topic, partition and offset) names it in a log line should
        it not decode."""
        offered = self._offered.get(section_id)
        if offered is not None and offered[0] > version:
            return
        current = self.states.get(section_id)
        if current is not None and current["version"] >= version:
            return
        self._offered[section_id] = (version, raw, origin)

    @property
    def offered(self) -> int:
        """States offered and not applied yet."""
        return len(self._offered)

    def settle(self) -> None:
        """Decode and apply the offered states (done before every read)."""
        offered, self._offered = self._offered, {}
        for sid, (version, raw, origin) in offered.items():
            try:
                state = orjson.loads(raw)
                if state["section_id"] != sid or state["version"] != version:
                    raise ValueError(
                        f"the record says section {sid!r} version {version}, its state "
                        f"{state['section_id']!r} version {state['version']}"
                    )
                self.apply_state(state)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("assessor skipped a section state (%s): %s", origin or sid, exc)

    def apply_state(self, state: dict[str, Any]) -> None:
        sid = state["section_id"]
        current = self.states.get(sid)
        if current is not None and current["version"] >= state["version"]:
            return
        self.states[sid] = state
        hourly = state.get("hourly") or []
        if not hourly:
            return
        held = self.history.setdefault(sid, {})
        for point in hourly:
            start = datetime.fromisoformat(point["start"]).timestamp()
            old = held.get(start)
            if old is not None and "version" in old:
                continue  # from bw.section-hours: newer than any state carrying the hour
            held[start] = point
        # Pruned only when well over the bound, so a state costs 24 inserts, not a scan.
        newest = datetime.fromisoformat(hourly[-1]["start"]).timestamp()
        if len(held) > HELD / timedelta(hours=1) + 48:
            cutoff = newest - HELD.total_seconds()
            for start in [t for t in held if t < cutoff]:
                del held[start]

    def apply_hour(self, hour: dict[str, Any]) -> None:
        """One record of ``bw.section-hours``: an hour the section's state no longer
        carries (or an older hour a batch changed), sent by the aggregator with the
        version of the state that left it out, so newer than any state carrying
        it; the newest record of an hour wins. Read whole at start-up, it gives
        the assessor its 7 days of hours back after a restart."""
        start = datetime.fromisoformat(hour["start"]).timestamp()
        held = self.history.setdefault(hour["section_id"], {})
        old = held.get(start)
        version = int(hour.get("version", 0))
        if old is not None and int(old.get("version", -1)) > version:
            return
        held[start] = {"start": hour["start"], "counts": hour["counts"], "version": version}

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
        self.settle()
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
                compared = False
                reasons: list[str] = []
                for analysis in candidates:
                    skipped: list[NotCompared] = []
                    found = [
                        c
                        for c in evaluate(rule, analysis, states, now, self.history, skipped)
                        if c.country == country
                    ]
                    mine = [s for s in skipped if s.country == country]
                    self._not_compared(mine)
                    reasons += [s.reason for s in mine]
                    if found:
                        compared = True
                        transition = self.tracker.apply(found[0], now)
                        if transition is not None:
                            self.apply_alert(transition)
                            out.append(transition)
                        break
                if not compared:
                    why = (
                        f"no official figure can be compared any more ({reasons[0]})"
                        if reasons
                        else f"no official figure of the last {rule.max_age_hours:g} h"
                    )
                    lapsed = self.tracker.lapse(rule.id, country, rule.metric, now, why)
                    if lapsed is not None:
                        self.apply_alert(lapsed)
                        out.append(lapsed)
        return out

    def _not_compared(self, skipped: Iterable[NotCompared]) -> None:
        for s in skipped:
            key = (s.rule, s.report_id, s.figure)
            if self.not_compared.get(key) == s:
                continue
            self.not_compared.pop(key, None)
            self.not_compared[key] = s
            while len(self.not_compared) > MAX_NOT_COMPARED:
                self.not_compared.popitem(last=False)
            log.info(
                "rule %s: %s %s figure %d of report %s (%s) not compared: %s",
                s.rule,
                s.country,
                s.metric,
                s.figure,
                s.report_id,
                s.period_label,
                s.reason,
            )

    def assessments(self, now: datetime, countries: Iterable[str]) -> list[dict[str, Any]]:
        """Assessments that changed since the last published one."""
        self.settle()
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
