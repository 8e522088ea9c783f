"""The assessor's picture: discrepancy transitions and changed assessments to publish."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.models import KINDS
from services.reports.analysis import analysis_message
from services.reports.discrepancy import DiscrepancyRule
from services.reports.picture import Picture
from tests.unit.reports.test_discrepancy import LV_57, NOW, report, state

RULE = DiscrepancyRule(id="official-vs-field", type="report_discrepancy")


def versioned(sid: str, per_hour: int, version: int) -> dict[str, object]:
    return {**state(sid, per_hour), "version": version}


def test_a_discrepancy_fires_and_resolves_when_the_field_catches_up() -> None:
    p = Picture([RULE])
    p.apply_state(versioned("LV-KRA", 0, 1))
    p.apply_analysis(report(LV_57, "lv"))
    (fired,) = p.discrepancies(NOW, ["LV", "LT", "PL"])
    assert fired["status"] == "firing" and fired["alert_id"] in p.firing
    assert p.discrepancies(NOW, ["LV"]) == []
    p.apply_state(versioned("LV-KRA", 2, 2))
    (resolved,) = p.discrepancies(NOW, ["LV"])
    assert resolved["status"] == "resolved" and p.firing == {}
    # A worker that does not own LV publishes nothing for it.
    p.apply_state(versioned("LV-KRA", 0, 3))
    assert p.discrepancies(NOW, ["PL"]) == []


def test_the_assessment_is_published_when_it_changes_only() -> None:
    p = Picture([RULE])
    first = p.assessments(NOW, ["LV"])
    assert [a["stage"] for a in first] == ["monitoring"]
    assert p.assessments(NOW + timedelta(minutes=1), ["LV"]) == []
    text = "The Belarusian side brought the migrants to the border in military vehicles."
    for i in range(2):
        p.apply_analysis({**report(text, "en"), "report_id": f"m{i}"})
    (changed,) = p.assessments(NOW + timedelta(minutes=2), ["LV"])
    military = next(f for f in changed["factors"] if f["factor"] == "military_risk")
    assert military["level"] == "high" and military["evidence"]["reports"] == ["m0", "m1"]


# --- periods beyond 24 h: the hourly history the picture keeps ------------------------

WEEKEND_START = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)  # Saturday 00:00 in Riga
WEEKEND_END = WEEKEND_START + timedelta(days=2)  # Monday 00:00 in Riga
WEEKEND_457 = "Over the weekend, border guards prevented 457 attempts to cross the border."


def states_over(
    sid: str, hours: int, per_hour: Callable[[datetime], int], first_version: int = 1
) -> list[dict[str, Any]]:
    """The states a section published over the last ``hours``, every 12 h, oldest
    first, each with its last 24 buckets; a bucket starting at ``t`` holds
    ``per_hour(t)`` crossing attempts. The newest state ends at NOW."""
    top = NOW.replace(minute=0) - timedelta(hours=1)
    out = []
    for n, back in enumerate(range(hours - 24, -1, -12)):
        newest = top - timedelta(hours=back)
        hourly = []
        for i in range(24):
            start = newest - timedelta(hours=23 - i)
            counts = {**dict.fromkeys(KINDS, 0), "crossing_attempt": per_hour(start)}
            hourly.append({"start": start.isoformat(), "counts": counts})
        out.append(
            {
                "section_id": sid,
                "country": sid[:2],
                "hourly": hourly,
                "counts_7d": dict.fromkeys(KINDS, 0),
                "updated_at": (newest + timedelta(hours=1)).isoformat(),
                "version": first_version + n,
            }
        )
    return out


def in_weekend(value: int, outside: int = 100) -> Callable[[datetime], int]:
    return lambda t: value if WEEKEND_START <= t < WEEKEND_END else outside


def test_a_weekend_figure_is_compared_hour_by_hour_with_the_held_buckets() -> None:
    p = Picture([RULE])
    for s in states_over("LV-KRA", 96, in_weekend(5)) + states_over("LV-SIL", 96, in_weekend(4)):
        p.apply_state(s)
    p.apply_state(states_over("LT-MED", 96, in_weekend(50))[-1])  # another country
    p.apply_analysis(report(WEEKEND_457, "en"))
    # 48 weekend hours: 5 x 48 + 4 x 48 = 432 against 457: they agree; no alert.
    assert p.discrepancies(NOW, ["LV"]) == []
    assert p.not_compared == {}

    q = Picture([RULE])
    for s in states_over("LV-KRA", 96, in_weekend(1)) + states_over("LV-SIL", 96, in_weekend(1)):
        q.apply_state(s)
    q.apply_analysis(report(WEEKEND_457, "en"))
    (fired,) = q.discrepancies(NOW, ["LV"])
    assert (fired["value"], fired["threshold"], fired["window"]) == (96, 457, "weekend")
    assert fired["section_id"] == "LV-ALL" and fired["country"] == "LV"
    assert "457 (weekend" in fired["summary"] and "96 counted in the field" in fired["summary"]


def test_n_days_and_a_week_are_summed_over_the_held_buckets() -> None:
    p = Picture([RULE])
    for s in states_over("LV-KRA", 7 * 24, lambda t: 2):
        p.apply_state(s)
    none_3 = "No attempts to cross the border illegally were recorded over the past three days."
    p.apply_analysis(report(none_3, "en"))
    # "none" over 72 h against 2 x 72 = 144 counted: a discrepancy.
    (fired,) = p.discrepancies(NOW, ["LV"])
    assert (fired["value"], fired["threshold"], fired["window"]) == (144, 0, "3 days")

    week = "Over the past week, border guards prevented 336 attempts to cross the border."
    later = NOW + timedelta(minutes=5)
    p.apply_analysis(
        analysis_message(
            {
                "report_id": "r-week",
                "source": {"name": "x", "type": "official"},
                "country": "LV",
                "published_at": later.isoformat(),
                "text": week,
                "language": "en",
            },
            now=later,
        )
    )
    # 168 hours x 2 = 336, from the buckets (the states' counts_7d are 0 here): resolved.
    (resolved,) = p.discrepancies(later, ["LV"])
    assert (resolved["status"], resolved["value"], resolved["threshold"]) == (
        "resolved",
        336,
        336,
    )


def test_periods_beyond_the_held_hours_are_skipped_with_the_reason() -> None:
    p = Picture([RULE])
    for s in states_over("LV-KRA", 24, lambda t: 0):  # a restart: only the newest state
        p.apply_state(s)
    month = (
        "Since the beginning of the month, 2,310 attempts to cross the border have been recorded."
    )
    p.apply_analysis({**report(month, "en"), "report_id": "r-month"})
    p.apply_analysis({**report(WEEKEND_457, "en"), "report_id": "r-weekend"})
    total = "In total since August 2021, border guards have prevented 28 455 attempts."
    p.apply_analysis({**report(total, "en"), "report_id": "r-total"})

    assert p.discrepancies(NOW, ["LV"]) == []  # never against a partial count
    reasons = {k[1]: (v.period_label, v.reason) for k, v in p.not_compared.items()}
    assert reasons["r-month"] == (
        "month",
        "the period spans 22.5 days, beyond the 7 days of hourly field counts held",
    )
    assert reasons["r-total"][0] == "cumulative" and "beyond the 7 days" in reasons["r-total"][1]
    label, reason = reasons["r-weekend"]
    assert label == "weekend"
    assert reason.startswith("LV-KRA: 34 of the period's 48 hourly buckets are not held (held from")


def test_the_history_is_bounded_to_the_held_window() -> None:
    p = Picture([RULE])
    for s in states_over("LV-KRA", 12 * 24, lambda t: 1):
        p.apply_state(s)
    held = p.history["LV-KRA"]
    assert len(held) <= 7 * 24 + 2 + 48
    assert min(held) >= (NOW - timedelta(days=7, hours=3, minutes=30)).timestamp() - 48 * 3600


def hour_records(sid: str, hours: int, per_hour: Callable[[datetime], int]) -> list[dict[str, Any]]:
    """``bw.section-hours`` records of ``sid`` for the ``hours`` before the last 24
    (what the aggregator sends as hours leave the state), newer versions than any state."""
    top = NOW.replace(minute=0) - timedelta(hours=1)
    out = []
    for back in range(hours - 1, 23, -1):
        start = top - timedelta(hours=back)
        out.append(
            {
                "schema_version": 1,
                "key": f"{sid}|{int(start.timestamp())}",
                "section_id": sid,
                "start": start.isoformat(),
                "counts": {**dict.fromkeys(KINDS, 0), "crossing_attempt": per_hour(start)},
                "version": 10_000 + back,
            }
        )
    return out


def test_after_a_restart_the_section_hours_give_the_assessor_its_week_back() -> None:
    """A restarted assessor sees only each section's newest state (24 h) on the
    compacted state topic; bw.section-hours holds the older hours."""
    newest = {s: states_over(s, 96, in_weekend(1))[-1] for s in ("LV-KRA", "LV-SIL")}
    p = Picture([RULE])
    for s in newest.values():
        p.apply_state(s)
    p.apply_analysis(report(WEEKEND_457, "en"))
    assert p.discrepancies(NOW, ["LV"]) == []
    (skipped,) = p.not_compared.values()  # the weekend's hours are not held
    assert "of the period's 48 hourly buckets are not held" in skipped.reason

    q = Picture([RULE])
    for sid in newest:
        for record in hour_records(sid, 96, in_weekend(1)):
            q.apply_hour(record)
    for s in newest.values():  # read in any order: a state never beats an hour record
        q.apply_state(s)
    q.apply_analysis(report(WEEKEND_457, "en"))
    (fired,) = q.discrepancies(NOW, ["LV"])
    assert (fired["value"], fired["threshold"], fired["window"]) == (96, 457, "weekend")


def test_an_older_state_never_overwrites_an_hour_record() -> None:
    p = Picture([RULE])
    (record,) = hour_records("LV-KRA", 25, lambda t: 7)
    p.apply_hour(record)
    start = datetime.fromisoformat(record["start"]).timestamp()
    stale = {**record, "counts": {**record["counts"], "crossing_attempt": 1}, "version": 3}
    p.apply_hour(stale)
    p.apply_state(
        {
            "section_id": "LV-KRA",
            "country": "LV",
            "version": 1,
            "hourly": [{"start": record["start"], "counts": stale["counts"]}],
        }
    )
    assert p.history["LV-KRA"][start]["counts"]["crossing_attempt"] == 7


def test_a_discrepancy_whose_figure_can_no_longer_be_compared_resolves_saying_why() -> None:
    p = Picture([RULE])
    p.apply_state(versioned("LV-KRA", 0, 1))
    p.apply_analysis(report(LV_57, "lv"))
    (fired,) = p.discrepancies(NOW, ["LV"])
    assert fired["status"] == "firing"
    # Still the newest figure a day later: it is still compared, still firing.
    assert p.discrepancies(NOW + timedelta(hours=24), ["LV"]) == []
    # Past the rule's max_age_hours (48 h) nothing can be compared: the episode ends.
    later = NOW + timedelta(hours=RULE.max_age_hours + 25)
    (lapsed,) = p.discrepancies(later, ["LV"])
    assert lapsed["status"] == "resolved" and lapsed["alert_id"] == fired["alert_id"]
    assert lapsed["seq"] == fired["seq"] + 1 and p.firing == {}
    assert f"no official figure of the last {RULE.max_age_hours:g} h" in lapsed["summary"]
    assert p.discrepancies(later + timedelta(minutes=1), ["LV"]) == []
