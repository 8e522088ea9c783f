"""The picture at a past hour: parsing ``at``, counts, levels and firing alerts then."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.models import KINDS
from services.aggregator.rules import load_rules
from services.api.history import HISTORY_SECONDS, HistoryError, Rebuilder, parse_at
from services.api.view import View
from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR

CAT = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")
RULES = load_rules(DEFAULT_CONFIG_DIR / "rules.yaml")
HOUR = 3600
# A fixed "now" on the hour.
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def hour(sid: str, start: float, version: int = 1, **counts: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "key": f"{sid}|{int(start)}",
        "section_id": sid,
        "start": iso(start),
        "counts": dict.fromkeys(KINDS, 0) | counts,
        "version": version,
    }


def transition(
    aid: str, seq: int, status: str, at: float, severity: str = "high"
) -> dict[str, Any]:
    sid = aid.split(".")[1]
    return {
        "alert_id": aid,
        "seq": seq,
        "rule": aid.split(".")[0],
        "status": status,
        "severity": severity,
        "section_id": sid,
        "country": sid[:2],
        "updated_at": iso(at),
    }


def view() -> View:
    return View(CAT, rebuilder=Rebuilder(CAT, RULES))


def section(picture: dict[str, Any], sid: str) -> dict[str, Any]:
    [out] = [s for s in picture["sections"] if s["section_id"] == sid]
    return out


# --- at ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("yesterday", "RFC 3339"),
        ("2026-11-30", "RFC 3339"),
        ("2026-11-30T10:00:00", "RFC 3339"),  # no offset: whose 10:00?
        ("1764496800", "RFC 3339"),
        ("2026-11-30T25:00:00Z", "not a valid date-time"),
        ("2026-11-30T12:00:01Z", "in the future"),
        ("2026-11-30T14:00:00+01:00", "in the future"),
        ("2026-11-23T11:59:59Z", "older than the 7 days"),
    ],
)
def test_a_bad_at_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(HistoryError, match=problem):
        parse_at(text, NOW)


def test_at_takes_rfc_3339_with_any_offset_and_the_whole_7_days() -> None:
    assert parse_at("2026-11-30T12:00:00Z", NOW) == NOW
    assert parse_at("2026-11-30T13:00:00+01:00", NOW) == NOW
    assert parse_at("2026-11-30t02:30:00.123456789z", NOW) == NOW - 9.5 * HOUR + 0.123456
    assert parse_at("2026-11-23T12:00:00Z", NOW) == NOW - HISTORY_SECONDS


# --- counts and levels --------------------------------------------------------------


def test_counts_at_a_past_hour_take_the_hours_that_started_before_it() -> None:
    v = view()
    for h in range(-200, 0):  # one crossing attempt an hour, 200 hours
        v.apply_hour(hour("LV-SIL", NOW + h * HOUR, crossing_attempt=1))
    v.apply_hour(hour("LV-SIL", NOW - 30 * HOUR, crossing_attempt=5, detection=2))

    at = NOW - 30 * HOUR  # on the hour: that hour has not started counting
    s = section(v.picture_at(at), "LV-SIL")
    assert s["counts_1h"]["crossing_attempt"] == 1
    assert s["counts_24h"]["crossing_attempt"] == 24
    assert s["counts_7d"]["crossing_attempt"] == 168
    assert s["counts_24h"]["detection"] == 0
    # Half an hour later, the hour that contains at counts whole.
    s = section(v.picture_at(at + HOUR / 2), "LV-SIL")
    assert s["counts_1h"] == dict.fromkeys(KINDS, 0) | {"crossing_attempt": 5, "detection": 2}
    assert s["counts_24h"]["crossing_attempt"] == 23 + 5
    assert s["last_event_at"] == iso(at + HOUR / 2).replace("+00:00", "Z")
    # A section with no hours is quiet; every section of the catalogue is there.
    picture = v.picture_at(at)
    assert section(picture, "LV-PIE")["counts_7d"] == dict.fromkeys(KINDS, 0)
    assert [s["section_id"] for s in picture["sections"]] == list(CAT)
    assert picture["at"] == iso(at).replace("+00:00", "Z")


def test_the_level_then_is_what_the_rules_ladders_give_the_counts_then() -> None:
    v = view()
    # crossings-24h: low 20, medium 50, high 100, critical 164 (deploy/config/rules.yaml).
    for h in range(-48, -24):
        v.apply_hour(hour("LT-ADU", NOW + h * HOUR, crossing_attempt=3))  # 72 in 24 h
    for h in range(-24, 0):
        v.apply_hour(hour("LT-ADU", NOW + h * HOUR, crossing_attempt=1))  # 24 in 24 h
    assert section(v.picture_at(NOW - 24 * HOUR), "LT-ADU")["level"] == "medium"
    assert section(v.picture_at(NOW), "LT-ADU")["level"] == "low"
    assert section(v.picture_at(NOW - 60 * HOUR), "LT-ADU")["level"] == "low"
    # One humanitarian case is critical for 6 h (an "any" rule), then not.
    v.apply_hour(hour("LT-ADU", NOW - 10 * HOUR, crossing_attempt=1, humanitarian=1))
    assert section(v.picture_at(NOW - 9 * HOUR), "LT-ADU")["level"] == "critical"
    assert section(v.picture_at(NOW - 4 * HOUR), "LT-ADU")["level"] == "critical"
    assert section(v.picture_at(NOW - 3 * HOUR), "LT-ADU")["level"] == "low"
    # The country takes its highest section's level and sums the counts.
    [lt] = [c for c in v.picture_at(NOW - 9 * HOUR)["countries"] if c["country"] == "LT"]
    assert lt["level"] == "critical" and lt["counts_24h"]["humanitarian"] == 1


def test_a_surge_then_is_against_the_24_hours_before_it() -> None:
    v = view()
    for h in range(-30, 0):
        v.apply_hour(hour("PL-BIA", NOW + h * HOUR, detection=1))
    v.apply_hour(hour("PL-BIA", NOW - 5 * HOUR, crossing_attempt=16))  # >= 15, 3x a mean of 0
    assert section(v.picture_at(NOW - 4 * HOUR), "PL-BIA")["level"] == "high"
    assert section(v.picture_at(NOW - 5 * HOUR), "PL-BIA")["level"] == "low"


def test_sensors_silent_then_counts_from_the_newest_hour_with_their_events() -> None:
    v = view()
    # LV-SIL has sensors; sensors-silent: no detection or crossing for 720 min.
    for h in range(-40, -20):
        v.apply_hour(hour("LV-SIL", NOW + h * HOUR, detection=1))
    for h in range(-20, 0):
        v.apply_hour(hour("LV-SIL", NOW + h * HOUR, apprehension=1))
    # The last detection hour ends at -20 h: silent 12 h from -8 h on.
    assert section(v.picture_at(NOW - 8 * HOUR - 60), "LV-SIL")["level"] == "low"
    assert section(v.picture_at(NOW - 8 * HOUR), "LV-SIL")["level"] == "medium"


def test_the_newest_version_of_an_hour_wins_from_either_topic() -> None:
    v = view()
    start = NOW - 50 * HOUR
    v.apply_hour(hour("LV-KRA", start, version=5, crossing_attempt=7))
    v.apply_hour(hour("LV-KRA", start, version=3, crossing_attempt=2))  # older: ignored
    assert section(v.picture_at(start + 1), "LV-KRA")["counts_1h"]["crossing_attempt"] == 7
    hourly = [{"start": iso(start), "counts": dict.fromkeys(KINDS, 0) | {"crossing_attempt": 9}}]
    state = {
        "section_id": "LV-KRA",
        "level": "low",
        "counts_1h": hourly[0]["counts"],
        "counts_24h": hourly[0]["counts"],
        "counts_7d": hourly[0]["counts"],
        "hourly": hourly,
        "last_event_at": iso(start + 60),
        "firing_alerts": [],
        "version": 6,
        "updated_at": iso(start + 60),
    }
    v.apply_state(state)
    s = section(v.picture_at(start + 120), "LV-KRA")
    assert s["counts_1h"]["crossing_attempt"] == 9
    assert s["last_event_at"] == iso(start + 60)  # the live one, not after at
    assert s["version"] == 0 and s["updated_at"] == iso(start + 120).replace("+00:00", "Z")
    # The section detail serves the same hour.
    assert v.hourly("LV-KRA", 168)[0]["counts"]["crossing_attempt"] == 9


# --- alerts -------------------------------------------------------------------------


def test_firing_alerts_then_are_those_whose_latest_transition_by_then_fires() -> None:
    v = view()
    a, b = "crossings-24h.LV-KRA.1", "humanitarian.PL-BIA.1"
    v.apply_alert(transition(a, 1, "firing", NOW - 10 * HOUR, "low"))
    v.apply_alert(transition(a, 3, "resolved", NOW - 4 * HOUR, "medium"))
    v.apply_alert(transition(a, 2, "firing", NOW - 6 * HOUR, "medium"))
    v.apply_alert(transition(b, 1, "firing", NOW - 5 * HOUR, "critical"))
    v.apply_ack(
        {"ack_id": "k1", "alert_id": a, "seq": 2, "acked_at": iso(NOW - 5.5 * HOUR), "by": "x"}
    )

    def firing(at: float) -> list[tuple[str, int, bool]]:
        return [(f["alert_id"], f["seq"], f["acked"]) for f in v.picture_at(at)["firing_alerts"]]

    assert firing(NOW - 11 * HOUR) == []
    assert firing(NOW - 10 * HOUR) == [(a, 1, False)]  # "at or before"
    assert firing(NOW - 6 * HOUR + 1) == [(a, 2, False)]
    assert firing(NOW - 5 * HOUR) == [(b, 1, False), (a, 2, True)]  # newest first
    assert firing(NOW - 4 * HOUR) == [(b, 1, False)]
    picture = v.picture_at(NOW - 5 * HOUR)
    assert section(picture, "LV-KRA")["firing_alerts"] == [a]
    [lv] = [c for c in picture["countries"] if c["country"] == "LV"]
    assert lv["firing_alerts"] == 1


def test_the_api_imports_the_aggregators_domain_code_but_not_faust() -> None:
    code = "import sys, services.api.app; sys.exit('faust' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
