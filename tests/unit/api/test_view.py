"""The API's materialised view: versions, redeliveries, roll-ups and alert filters."""

from __future__ import annotations

from typing import Any

from schemas.models import KINDS
from services.api.history import KEEP_HOURS
from services.api.view import View
from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR

CAT = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")


def _state(sid: str, version: int, crossings: int, level: str = "low") -> dict[str, Any]:
    counts = dict.fromkeys(KINDS, 0) | {"crossing_attempt": crossings}
    return {
        "section_id": sid,
        "level": level,
        "counts_1h": counts,
        "counts_24h": counts,
        "counts_7d": counts,
        "hourly": [],
        "last_event_at": None,
        "firing_alerts": [f"r.{sid}.1"] if level != "low" else [],
        "version": version,
        "updated_at": "2026-11-22T12:00:00+00:00",
    }


def _alert(aid: str, seq: int, status: str, severity: str, at: str) -> dict[str, Any]:
    sid = aid.split(".")[1]
    return {
        "alert_id": aid,
        "seq": seq,
        "status": status,
        "severity": severity,
        "section_id": sid,
        "country": sid[:2],
        "updated_at": at,
    }


def test_an_older_version_never_replaces_a_newer_one() -> None:
    view = View(CAT)
    assert view.apply_state(_state("LV-KRA", 3, 30))
    assert not view.apply_state(_state("LV-KRA", 2, 99))
    assert not view.apply_state(_state("LV-KRA", 3, 99))
    assert view.section("LV-KRA")["counts_24h"]["crossing_attempt"] == 30  # type: ignore[index]


def test_a_redelivered_transition_is_kept_once_in_order() -> None:
    view = View(CAT)
    assert view.apply_alert(
        _alert("r.LV-KRA.1", 2, "resolved", "high", "2026-11-22T12:05:00+00:00")
    )
    assert view.apply_alert(_alert("r.LV-KRA.1", 1, "firing", "high", "2026-11-22T12:00:00+00:00"))
    assert not view.apply_alert(
        _alert("r.LV-KRA.1", 1, "firing", "high", "2026-11-22T12:00:00+00:00")
    )
    assert [t["seq"] for t in view.alert("r.LV-KRA.1") or []] == [1, 2]


def test_country_roll_ups_are_the_sums_of_their_sections() -> None:
    view = View(CAT)
    view.apply_state(_state("LV-KRA", 1, 57, "high"))
    view.apply_state(_state("LV-SIL", 1, 107))
    view.apply_state(_state("PL-KUZ", 1, 200, "medium"))
    countries = {c["country"]: c for c in view.countries()}
    assert countries["LV"]["counts_24h"]["crossing_attempt"] == 164
    assert countries["LV"]["level"] == "high"
    assert countries["LV"]["sections"] == sum(1 for s in CAT.values() if s.country == "LV")
    assert countries["PL"]["counts_24h"]["crossing_attempt"] == 200
    assert countries["LT"]["counts_24h"]["crossing_attempt"] == 0
    assert countries["LT"]["level"] == "low"
    picture = view.picture()
    assert len(picture["sections"]) == len(CAT)
    assert [c["country"] for c in picture["countries"]] == ["LT", "LV", "PL"]


def test_alert_filters_and_paging() -> None:
    view = View(CAT)
    view.apply_alert(_alert("a.LV-KRA.1", 1, "firing", "medium", "2026-11-22T10:00:00+00:00"))
    view.apply_alert(_alert("b.LV-SIL.1", 1, "firing", "critical", "2026-11-22T11:00:00+00:00"))
    view.apply_alert(_alert("c.PL-KUZ.1", 1, "firing", "high", "2026-11-22T12:00:00+02:00"))
    view.apply_alert(_alert("c.PL-KUZ.1", 2, "resolved", "high", "2026-11-22T13:00:00+00:00"))
    ids = lambda alerts: [a["alert_id"] for a in alerts]  # noqa: E731
    assert ids(view.alert_list()) == ["c.PL-KUZ.1", "b.LV-SIL.1", "a.LV-KRA.1"]
    assert ids(view.alert_list(status="firing")) == ["b.LV-SIL.1", "a.LV-KRA.1"]
    assert ids(view.alert_list(severity="high")) == ["c.PL-KUZ.1", "b.LV-SIL.1"]
    assert ids(view.alert_list(section="LV-*")) == ["b.LV-SIL.1", "a.LV-KRA.1"]
    assert ids(view.alert_list(country="PL")) == ["c.PL-KUZ.1"]
    assert ids(view.alert_list(since="2026-11-22T10:30:00+00:00")) == ["c.PL-KUZ.1", "b.LV-SIL.1"]
    page = view.alert_list(limit=1)
    assert ids(view.alert_list(limit=5, before=page[-1]["updated_at"])) == [
        "b.LV-SIL.1",
        "a.LV-KRA.1",
    ]


def _report(rid: str, country: str = "LV", title: str = "t") -> dict[str, Any]:
    return {"report_id": rid, "country": country, "title": title, "text": "x"}


def _analysis(rid: str, value: int) -> dict[str, Any]:
    return {
        "report_id": rid,
        "country": "LV",
        "figures": [{"value": value}],
        "signals": [],
        "language": "lv",
        "extractor": "bw-reports/1.0.0",
        "analysed_at": "2026-11-22T12:00:01+00:00",
    }


def test_reports_are_served_with_their_analysis_whichever_arrives_first() -> None:
    view = View(CAT, recent_reports=3)
    assert view.apply_analysis(_analysis("a", 5))  # before its report: kept
    view.apply_report(_report("a"))
    view.apply_report(_report("b", "PL"))
    assert view.report("a")["analysis"]["figures"] == [{"value": 5}]  # type: ignore[index]
    assert view.report("b")["analysis"] is None  # type: ignore[index]
    view.apply_analysis(_analysis("b", 7))
    assert view.report("b")["analysis"]["figures"] == [{"value": 7}]  # type: ignore[index]
    assert view.report("nope") is None


def test_a_reposted_report_is_listed_once_and_old_ones_fall_out() -> None:
    view = View(CAT, recent_reports=3)
    view.apply_report(_report("a", title="first"))
    view.apply_report(_report("a", title="second"))
    view.apply_report(_report("b", "PL"))
    assert [(r["report_id"], r["title"]) for r in view.recent_reports()] == [
        ("b", "t"),
        ("a", "second"),
    ]
    assert [r["report_id"] for r in view.recent_reports("PL")] == ["b"]
    for i in range(10):
        view.apply_analysis(_analysis(f"x{i}", i))
    assert len(view.analyses) == 6  # bounded at twice the recent reports


def _hourly_state(sid: str, hour: int, crossings: int) -> dict[str, Any]:
    """The state of hour ``hour`` (after 2026-11-01T00:00Z): its 24 buckets, each
    counting ``crossings``."""
    from datetime import UTC, datetime, timedelta

    base = datetime(2026, 11, 1, tzinfo=UTC)
    state = _state(sid, hour + 1, crossings)
    state["hourly"] = [
        {
            "start": (base + timedelta(hours=j)).isoformat(),
            "counts": dict.fromkeys(KINDS, 0) | {"crossing_attempt": crossings},
        }
        for j in range(hour - 23, hour + 1)
    ]
    return state


def test_the_hourly_history_keeps_15_days_and_stays_bounded() -> None:
    view = View(CAT)
    for hour in range(1000):
        view.apply_state(_hourly_state("LV-SIL", hour, hour))
        # 15 days: the 7 of the history API plus the 7 its oldest counts_7d reach back.
        assert len(view.history["LV-SIL"]) <= KEEP_HOURS + 48 + 24
    series = view.hourly("LV-SIL", 168)
    assert len(series) == 168
    # Each bucket as the newest state that carried it counted it.
    assert [p["counts"]["crossing_attempt"] for p in series[:-23]] == list(range(855, 1000))
    assert series[-24:] == view.states["LV-SIL"]["hourly"]
    assert view.hourly("LV-SIL", 24) == view.states["LV-SIL"]["hourly"]
    assert len(view.hourly("LV-SIL", 5)) == 5
    # An older version (a redelivery) changes neither the state nor the history.
    assert not view.apply_state(_hourly_state("LV-SIL", 10, -1))
    assert view.hourly("LV-SIL", 168) == series
    assert view.hourly("LV-PIE", 168) == []
