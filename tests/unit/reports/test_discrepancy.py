"""The report_discrepancy rule: official figures against the field counts of the country."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.models import KINDS, Alert
from services.reports.analysis import analysis_message
from services.reports.discrepancy import (
    DiscrepancyRule,
    Tracker,
    disagrees,
    evaluate,
    field_count,
    field_total,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RULE = DiscrepancyRule(id="official-vs-field", type="report_discrepancy", ratio=0.5, minimum=10)


def state(sid: str, per_hour: int, kind: str = "crossing_attempt") -> dict[str, Any]:
    """A section state whose last 24 hourly buckets each hold ``per_hour`` of ``kind``."""
    top = NOW.replace(minute=0) - timedelta(hours=1)  # the last full hour ends at NOW
    hourly = [
        {
            "start": (top - timedelta(hours=23 - i)).isoformat(),
            "counts": {**dict.fromkeys(KINDS, 0), kind: per_hour},
        }
        for i in range(24)
    ]
    counts = {**dict.fromkeys(KINDS, 0), kind: per_hour * 24}
    return {
        "section_id": sid,
        "country": sid[:2],
        "hourly": hourly,
        "counts_24h": counts,
        "counts_7d": {**counts, kind: per_hour * 24 * 7},
        "updated_at": NOW.isoformat(),
    }


def report(text: str, language: str, country: str = "LV", kind: str = "official") -> dict[str, Any]:
    return analysis_message(
        {
            "report_id": f"r-{language}",
            "source": {"name": "x", "type": kind},
            "country": country,
            "published_at": NOW.isoformat(),
            "text": text,
            "language": language,
        },
        now=NOW,
    )


LV_57 = "Pēdējās diennakts laikā nelikumīgi šķērsot robežu atturētas 57 personas."


def test_a_daily_figure_is_compared_with_the_sum_of_the_countrys_sections() -> None:
    states = [state("LV-KRA", 1), state("LV-SIL", 1), state("LT-MED", 9)]
    (c,) = evaluate(RULE, report(LV_57, "lv"), states, NOW)
    assert (c.country, c.official, c.field, c.disagrees) == ("LV", 57, 48, False)
    (c,) = evaluate(RULE, report(LV_57, "lv"), [state("LV-KRA", 0)], NOW)
    assert (c.field, c.disagrees) == (0, True)
    assert "differs from 0 counted in the field" in c.summary()


def test_only_official_sources_and_covered_periods_are_compared() -> None:
    states = [state("LV-KRA", 0)]
    assert evaluate(RULE, report(LV_57, "lv", kind="media"), states, NOW) == []
    weekend = "Nedēļas nogalē novērsti 457 nelikumīgas robežšķērsošanas mēģinājumi."
    assert evaluate(RULE, report(weekend, "lv"), states, NOW) == []  # 48 h: not in the states
    undated = "Robežsargi aizturēja 4 personas."
    assert evaluate(RULE, report(undated, "lv"), states, NOW) == []
    assert evaluate(RULE, report(LV_57, "lv"), states, NOW + timedelta(days=3)) == []


def test_a_week_figure_uses_the_rolling_seven_days() -> None:
    text = "Over the past week, border guards prevented 300 attempts to cross the border."
    (c,) = evaluate(RULE, report(text, "en"), [state("LV-KRA", 2)], NOW)
    assert (c.period_label, c.field, c.disagrees) == ("week", 336, False)


@pytest.mark.parametrize(
    ("official", "qualifier", "field", "expected"),
    [
        (57, "exact", 48, False),
        (57, "exact", 20, True),
        (57, "exact", 120, True),
        (12, "exact", 3, False),  # under the absolute minimum
        (200, "more_than", 260, False),
        (200, "more_than", 40, True),
        (30, "at_most", 20, False),
        (30, "at_most", 90, True),
        (0, "none", 5, False),
        (0, "none", 10, True),
    ],
)
def test_qualifiers_narrow_what_disagrees(
    official: int, qualifier: str, field: int, expected: bool
) -> None:
    assert disagrees(RULE, official, qualifier, field) is expected


@given(official=st.integers(0, 5000), field=st.integers(0, 5000))
def test_within_the_minimum_never_disagrees_and_exact_is_symmetric(
    official: int, field: int
) -> None:
    if abs(official - field) < RULE.minimum:
        assert not disagrees(RULE, official, "exact", field)
    assert disagrees(RULE, official, "exact", field) == disagrees(RULE, field, "exact", official)


def test_field_total_refuses_a_period_its_buckets_do_not_cover() -> None:
    s = state("PL-KUZ", 1)
    assert field_total([s], "PL", "crossing_attempt", NOW - timedelta(hours=24), NOW) == 24
    assert field_total([s], "PL", "crossing_attempt", NOW - timedelta(hours=6), NOW) == 6
    old = NOW - timedelta(days=2)
    assert field_total([s], "PL", "crossing_attempt", old - timedelta(hours=24), old) is None
    assert field_total([], "PL", "crossing_attempt", NOW - timedelta(hours=24), NOW) is None


def test_an_episode_fires_updates_and_resolves_as_alert_transitions() -> None:
    tracker = Tracker(severity={RULE.id: "medium"})
    r = report(LV_57, "lv")
    (bad,) = evaluate(RULE, r, [state("LV-KRA", 0)], NOW)
    fired = tracker.apply(bad, NOW)
    assert fired is not None and fired["status"] == "firing" and fired["seq"] == 1
    Alert.model_validate(fired)
    assert tracker.apply(bad, NOW) is None  # nothing changed: no transition
    (good,) = evaluate(RULE, r, [state("LV-KRA", 2)], NOW + timedelta(minutes=5))
    resolved = tracker.apply(good, NOW + timedelta(minutes=5))
    assert resolved is not None
    Alert.model_validate(resolved)
    assert (resolved["alert_id"], resolved["seq"], resolved["status"]) == (
        "official-vs-field.LV-ALL.1",
        2,
        "resolved",
    )
    again = tracker.apply(bad, NOW + timedelta(hours=1))
    assert again is not None and again["alert_id"] == "official-vs-field.LV-ALL.2"


def test_a_restarted_tracker_takes_up_the_open_episode() -> None:
    first = Tracker(severity={})
    r = report(LV_57, "lv")
    (bad,) = evaluate(RULE, r, [state("LV-KRA", 0)], NOW)
    fired = first.apply(bad, NOW)
    assert fired is not None
    second = Tracker(severity={})
    second.restore(fired, "crossing_attempt")
    assert second.apply(bad, NOW) is None  # the same disagreement: no new transition
    (good,) = evaluate(RULE, r, [state("LV-KRA", 2)], NOW)
    resolved = second.apply(good, NOW)
    assert resolved is not None and (resolved["alert_id"], resolved["seq"]) == (
        fired["alert_id"],
        2,
    )


def test_a_gap_in_the_held_hours_refuses_the_period_naming_it() -> None:
    s = state("PL-KUZ", 1)
    first = datetime.fromisoformat(s["hourly"][0]["start"])
    older = {
        (first - timedelta(hours=h)).timestamp(): {
            "start": (first - timedelta(hours=h)).isoformat(),
            "counts": {**dict.fromkeys(KINDS, 0), "crossing_attempt": 3},
        }
        for h in range(1, 25)
        if h != 10  # one hour the assessor never saw
    }
    start = NOW - timedelta(hours=48)
    assert field_count([s], "PL", "crossing_attempt", start, NOW, {"PL-KUZ": older}) == (
        "PL-KUZ: 1 of the period's 48 hourly buckets are not held "
        f"(held from {(first - timedelta(hours=24)).isoformat()})"
    )
    older[(first - timedelta(hours=10)).timestamp()] = {
        "start": (first - timedelta(hours=10)).isoformat(),
        "counts": {"crossing_attempt": 3},
    }
    # 24 older hours x 3 + the state's 24 x 1.
    assert field_count([s], "PL", "crossing_attempt", start, NOW, {"PL-KUZ": older}) == 96


def test_the_analysis_says_which_figures_are_never_compared_and_why() -> None:
    text = (
        "In the last 24 hours, 57 attempts to cross the border were prevented. "
        "Since the beginning of the month, 2,310 attempts to cross the border have been "
        "recorded. An additional 200 soldiers will be deployed to support the border guards. "
        "Border guards detained 4 people."
    )
    figures = {f["value"]: f for f in report(text, "en")["figures"]}
    assert figures[57]["not_compared"] is None
    assert figures[2310]["not_compared"] == (
        "the period spans 22.5 days, beyond the 7 days of hourly field counts held"
    )
    assert figures[200]["not_compared"] == "personnel_deployed is not counted in the field"
    assert figures[4]["not_compared"] == "the period 'unknown' has no known start and end"


@pytest.mark.parametrize("minute", [0, 13, 29, 31, 59])
def test_a_day_figure_is_compared_whatever_the_minute_it_was_published(minute: int) -> None:
    """A state holds 24 buckets up to the current hour; a day published at 09:13 starts
    inside yesterday's 09:00 bucket, which the state no longer has."""
    now = NOW + timedelta(minutes=minute)
    top = now.replace(minute=0)  # the current hour, partial
    hourly = [
        {
            "start": (top - timedelta(hours=23 - i)).isoformat(),
            "counts": {**dict.fromkeys(KINDS, 0), "crossing_attempt": 2},
        }
        for i in range(24)
    ]
    s = {"section_id": "LV-KRA", "country": "LV", "hourly": hourly, "updated_at": now.isoformat()}
    counted = field_count([s], "LV", "crossing_attempt", now - timedelta(hours=24), now)
    # At 09:00 the period's first bucket (yesterday 09:00) is gone: 23 full hours.
    # From 09:01 the partial current hour counts too; from 09:31 the period begins
    # with yesterday's 10:00 bucket, which the state holds.
    assert counted == 2 * (23 if minute == 0 else 24)
