"""The API's in-memory materialised view of the live picture (no FastAPI, no Kafka).

Built from ``bw.section-state`` (latest state per section; older versions are
ignored) and ``bw.alerts`` (transitions; a redelivered ``seq`` is ignored).
Sections of the catalogue that have no state yet show zero counts.

A state carries only its section's last 24 hourly buckets, so the view also
keeps, per section, the latest counts of every clock hour of the last 15 days
(``history.KEEP_HOURS``), from two sources: the hourly series of the states it
applies (the last 24 hours), and ``bw.section-hours``, where the aggregator
publishes each hour once a state no longer carries it, and again if a later
event changes it (the newest ``version`` of an hour wins).
That topic is compacted per (section, hour) and kept 15 days, so a restarted
API finds the whole history again, including the hours of a backfill or of late
events that no state ever carried. The section detail serves up to 168 of
them (hours never counted are absent from the series, never zero), and
``picture_at`` rebuilds the picture of any moment of the last 7 days (see
history.py).
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any

from schemas.models import KINDS, SEVERITY_ORDER
from services.api.history import KEEP_HOURS, Rebuilder, transition_at
from services.common.catalogue import Catalogue, Section

ZERO = dict.fromkeys(KINDS, 0)
HISTORY_HOURS = 168
DEFAULT_BUCKET_SECONDS = 3600.0


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _iso_z(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _bucket_seconds(hourly: list[dict[str, Any]]) -> float:
    """The bucket width of a state's series (BW_BUCKET_SECONDS of the aggregator)."""
    if len(hourly) >= 2:
        width = _ts(hourly[-1]["start"]) - _ts(hourly[-2]["start"])
        if width > 0:
            return width
    return DEFAULT_BUCKET_SECONDS


class View:
    def __init__(
        self,
        catalogue: Catalogue,
        max_alerts: int = 10_000,
        recent_events: int = 1000,
        recent_reports: int = 200,
        rebuilder: Rebuilder | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.rebuilder = rebuilder or Rebuilder(catalogue, [])
        self.states: dict[str, dict[str, Any]] = {}
        self.alerts: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.acks: dict[str, list[dict[str, Any]]] = {}
        self.alert_times: dict[str, list[float]] = {}
        self.max_alerts = max_alerts
        self.events: deque[dict[str, Any]] = deque(maxlen=recent_events)
        self.reports: deque[dict[str, Any]] = deque(maxlen=recent_reports)
        # Analyses by report_id (bw.report-analysis), bounded like the reports; an
        # analysis may arrive before its report (another topic), so both are kept.
        self.analyses: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.max_analyses = recent_reports * 2
        # The latest closure-criteria assessment per country (bw.assessment).
        self.assessments: dict[str, dict[str, Any]] = {}
        # Kinds whose counts moved in the last applied state of each section.
        self.changed_kinds: dict[str, frozenset[str]] = {}
        # section_id -> {hour start (epoch s) -> hourly point}: every hour seen in an
        # applied state or a section-hours record, the newest version winning, for
        # KEEP_HOURS; and that version per hour.
        self.history: dict[str, dict[float, dict[str, Any]]] = {}
        self.history_versions: dict[str, dict[float, int]] = {}

    def apply_state(self, state: dict[str, Any]) -> bool:
        """Keep ``state`` if it is newer than what we have; True if it changed the view."""
        sid = state["section_id"]
        current = self.states.get(sid)
        if current is not None and current["version"] >= state["version"]:
            return False
        self.changed_kinds[sid] = frozenset(
            k
            for k in KINDS
            if current is None
            or any(current[w].get(k) != state[w].get(k) for w in ("counts_1h", "counts_24h"))
        )
        self.states[sid] = state
        self._remember_hours(sid, state["hourly"], state["version"])
        return True

    def apply_hour(self, hour: dict[str, Any]) -> bool:
        """Keep one hour's counts from ``bw.section-hours`` (no feed message)."""
        point = {"start": hour["start"], "counts": hour["counts"]}
        self._remember_hours(hour["section_id"], [point], int(hour["version"]))
        return False

    def _remember_hours(self, sid: str, hourly: list[dict[str, Any]], version: int) -> None:
        if not hourly:
            return
        history = self.history.setdefault(sid, {})
        versions = self.history_versions.setdefault(sid, {})
        for point in hourly:
            start = _ts(point["start"])
            if versions.get(start, -1) <= version:
                history[start] = point
                versions[start] = version
        # Pruned only when well over the bound, so a state costs 24 inserts, not a scan.
        if len(history) > KEEP_HOURS + 48:
            cutoff = max(history) - KEEP_HOURS * DEFAULT_BUCKET_SECONDS
            for start in [t for t in history if t <= cutoff]:
                del history[start]
                versions.pop(start, None)

    def hourly(self, section_id: str, hours: int) -> list[dict[str, Any]]:
        """Up to ``hours`` hourly buckets of a section up to its newest, oldest first.

        The newest state's own buckets are served as they are; older ones come from
        the history (hours it never saw are left out, not given as zero)."""
        state = self.states.get(section_id)
        if state is None:
            return []
        current: list[dict[str, Any]] = state["hourly"]
        if not current or hours <= len(current):
            return current[-hours:]
        width = _bucket_seconds(current)
        first = _ts(current[0]["start"])
        cutoff = _ts(current[-1]["start"]) - hours * width
        history = self.history.get(section_id, {})
        older = [history[t] for t in sorted(history) if cutoff < t < first]
        return older + current

    def history_since(self, section_id: str) -> str | None:
        """Start of the oldest hourly bucket the view holds for the section."""
        history = self.history.get(section_id)
        if not history:
            return None
        return str(history[min(history)]["start"])

    def apply_ack(self, ack: dict[str, Any]) -> bool:
        """Record an operator's acknowledgement (once per ``ack_id``)."""
        acks = self.acks.setdefault(ack["alert_id"], [])
        if any(a["ack_id"] == ack["ack_id"] for a in acks):
            return False
        acks.append(ack)
        return True

    def apply_field_batch(self, batch: dict[str, Any]) -> bool:
        """Keep the newest field events for the "recent" list (no feed message)."""
        self.events.extend(batch["events"])
        return False

    def apply_report(self, report: dict[str, Any]) -> bool:
        self.reports.append(report)
        return False

    def apply_analysis(self, analysis: dict[str, Any]) -> bool:
        """Keep a report's analysis (the newest wins); True: a feed message."""
        rid = analysis["report_id"]
        self.analyses.pop(rid, None)
        self.analyses[rid] = analysis
        while len(self.analyses) > self.max_analyses:
            self.analyses.popitem(last=False)
        return True

    def apply_assessment(self, assessment: dict[str, Any]) -> bool:
        """Keep a country's newest assessment; True: a feed message."""
        current = self.assessments.get(assessment["country"])
        if current is not None and current["assessed_at"] > assessment["assessed_at"]:
            return False
        self.assessments[assessment["country"]] = assessment
        return True

    def assessment_list(self) -> list[dict[str, Any]]:
        return [self.assessments[c] for c in sorted(self.assessments)]

    def _with_analysis(self, report: dict[str, Any]) -> dict[str, Any]:
        analysis = self.analyses.get(report["report_id"])
        if analysis is None:
            return {**report, "analysis": None}
        keep = ("figures", "signals", "language", "extractor", "analysed_at")
        return {**report, "analysis": {k: analysis.get(k) for k in keep}}

    def report(self, report_id: str) -> dict[str, Any] | None:
        """The newest copy of one recent report, with its analysis (or ``None`` yet)."""
        for report in reversed(self.reports):
            if report.get("report_id") == report_id:
                return self._with_analysis(report)
        return None

    def recent_events(
        self, section: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        out = []
        for event in reversed(self.events):
            if section and not fnmatch.fnmatchcase(event["section_id"], section):
                continue
            if kind and event["kind"] != kind:
                continue
            out.append(event)
            if len(out) >= limit:
                break
        return out

    def recent_reports(self, country: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for r in reversed(self.reports):
            # A re-posted report (same id) is listed once, newest copy.
            if r.get("report_id") in seen or (country and r.get("country") != country):
                continue
            seen.add(r.get("report_id", ""))
            out.append(self._with_analysis(r))
            if len(out) >= limit:
                break
        return out

    def apply_alert(self, alert: dict[str, Any]) -> bool:
        """Append a transition unless its ``seq`` is already known."""
        history = self.alerts.get(alert["alert_id"])
        if history is None:
            history = self.alerts[alert["alert_id"]] = []
            while len(self.alerts) > self.max_alerts:
                gone, _ = self.alerts.popitem(last=False)
                self.alert_times.pop(gone, None)
        if any(t["seq"] == alert["seq"] for t in history):
            return False
        history.append(alert)
        history.sort(key=lambda t: t["seq"])
        # Their times, parsed once, for picture_at (10,000 alerts: 20 ms a request).
        self.alert_times[alert["alert_id"]] = [_ts(t["updated_at"]) for t in history]
        return True

    def section(
        self, section_id: str, detail: bool = False, hours: int = 24
    ) -> dict[str, Any] | None:
        section = self.catalogue.get(section_id)
        if section is None:
            return None
        return self._section(section, detail, hours)

    def sections(self) -> list[dict[str, Any]]:
        return [self._section(s, False) for s in self.catalogue.values()]

    def _section(self, section: Section, detail: bool, hours: int = 24) -> dict[str, Any]:
        state = self.states.get(section.id)
        out: dict[str, Any] = {
            "section_id": section.id,
            "name": section.name,
            "country": section.country,
            "neighbour": section.neighbour,
            "centre": section.centre.model_dump(),
            "level": state["level"] if state else "low",
            "counts_1h": state["counts_1h"] if state else ZERO,
            "counts_24h": state["counts_24h"] if state else ZERO,
            "counts_7d": state["counts_7d"] if state else ZERO,
            "last_event_at": state["last_event_at"] if state else None,
            "firing_alerts": state["firing_alerts"] if state else [],
            "version": state["version"] if state else 0,
            "updated_at": state["updated_at"] if state else None,
        }
        if detail:
            out["polyline"] = section.polyline
            out["hourly"] = self.hourly(section.id, hours)
            out["history_since"] = self.history_since(section.id)
        return out

    def alert_list(
        self,
        status: str | None = None,
        section: str | None = None,
        limit: int = 100,
        *,
        severity: str | None = None,
        country: str | None = None,
        since: str | None = None,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Latest transition of each alert, newest first.

        ``severity`` is a minimum; ``since``/``before`` bound ``updated_at``
        (``before`` pages backwards: pass the last item's ``updated_at``)."""
        latest = [self._with_acks(h[-1]) for h in self.alerts.values() if h]
        if status:
            latest = [a for a in latest if a["status"] == status]
        if section:
            latest = [a for a in latest if fnmatch.fnmatchcase(a["section_id"], section)]
        if country:
            latest = [a for a in latest if a["country"] == country]
        if severity:
            floor = SEVERITY_ORDER[severity]
            latest = [a for a in latest if SEVERITY_ORDER[a["severity"]] >= floor]
        if since:
            latest = [a for a in latest if _ts(a["updated_at"]) >= _ts(since)]
        if before:
            latest = [a for a in latest if _ts(a["updated_at"]) < _ts(before)]
        latest.sort(key=lambda a: (_ts(a["updated_at"]), a["alert_id"]), reverse=True)
        return latest[:limit]

    def countries(self, sections: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Per-country roll-ups: sums of the sections' windows, the highest level."""
        out: dict[str, dict[str, Any]] = {}
        for section in self.sections() if sections is None else sections:
            c = out.setdefault(
                section["country"],
                {
                    "country": section["country"],
                    "level": "low",
                    "sections": 0,
                    "counts_1h": dict(ZERO),
                    "counts_24h": dict(ZERO),
                    "counts_7d": dict(ZERO),
                    "firing_alerts": 0,
                },
            )
            c["sections"] += 1
            for window in ("counts_1h", "counts_24h", "counts_7d"):
                for kind, n in section[window].items():
                    c[window][kind] += n
            c["firing_alerts"] += len(section["firing_alerts"])
            if SEVERITY_ORDER[section["level"]] > SEVERITY_ORDER[c["level"]]:
                c["level"] = section["level"]
        return [out[k] for k in sorted(out)]

    def picture(self) -> dict[str, Any]:
        """The whole picture in one document."""
        return {
            "sections": self.sections(),
            "countries": self.countries(),
            "firing_alerts": self.alert_list(status="firing", limit=self.max_alerts),
        }

    def picture_at(self, at: float) -> dict[str, Any]:
        """The whole picture as it was at ``at`` (epoch s), rebuilt from the hourly
        counts and the alert transitions (see history.py for what "at" means)."""
        firing: list[dict[str, Any]] = []
        by_section: dict[str, list[str]] = {}
        for alert_id, transitions in self.alerts.items():
            times = self.alert_times.get(alert_id) or [_ts(t["updated_at"]) for t in transitions]
            latest = transition_at(transitions, at, times)
            if latest is None or latest["status"] != "firing":
                continue
            acks = [a for a in self.acks.get(alert_id, []) if _ts(a["acked_at"]) <= at]
            firing.append({**latest, "acked": bool(acks), "acks": len(acks)})
            by_section.setdefault(latest["section_id"], []).append(alert_id)
        firing.sort(key=lambda a: (_ts(a["updated_at"]), a["alert_id"]), reverse=True)
        stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
        sections = []
        for section in self.catalogue.values():
            rebuilt = self.rebuilder.section_at(section.id, self.history.get(section.id, {}), at)
            state = self.states.get(section.id)
            last = state["last_event_at"] if state else None
            if last is None or _ts(last) > at:
                newest = rebuilt["newest_event_hour_end"]
                last = None if newest is None else _iso_z(newest)
            sections.append(
                {
                    "section_id": section.id,
                    "name": section.name,
                    "country": section.country,
                    "neighbour": section.neighbour,
                    "centre": section.centre.model_dump(),
                    "level": rebuilt["level"],
                    "counts_1h": rebuilt["counts_1h"],
                    "counts_24h": rebuilt["counts_24h"],
                    "counts_7d": rebuilt["counts_7d"],
                    "last_event_at": last,
                    "firing_alerts": sorted(by_section.get(section.id, [])),
                    "version": 0,
                    "updated_at": stamp,
                }
            )
        return {
            "at": stamp,
            "sections": sections,
            "countries": self.countries(sections),
            "firing_alerts": firing,
        }

    def _with_acks(self, transition: dict[str, Any]) -> dict[str, Any]:
        acks = self.acks.get(transition["alert_id"], [])
        return {**transition, "acked": bool(acks), "acks": len(acks)}

    def alert(self, alert_id: str) -> list[dict[str, Any]] | None:
        return self.alerts.get(alert_id)

    def alert_detail(self, alert_id: str) -> dict[str, Any] | None:
        history = self.alerts.get(alert_id)
        if not history:
            return None
        return {
            "alert_id": alert_id,
            "current": self._with_acks(history[-1]),
            "transitions": history,
            "acks": self.acks.get(alert_id, []),
        }

    def level_rank(self, section_id: str) -> int:
        state = self.states.get(section_id)
        return SEVERITY_ORDER[state["level"]] if state else 0
