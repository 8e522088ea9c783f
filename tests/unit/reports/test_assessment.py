"""The closure-criteria assessment: factor levels with evidence, and the stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.reports.analysis import analysis_message
from services.reports.assessment import FACTORS, LEVELS, STAGES, assess, stage_for

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def analysis(
    rid: str,
    text: str,
    lang: str = "en",
    country: str = "LV",
    kind: str = "official",
    age_h: float = 1,
) -> dict[str, Any]:
    return analysis_message(
        {
            "report_id": rid,
            "source": {"name": "x", "type": kind},
            "country": country,
            "published_at": (NOW - timedelta(hours=age_h)).isoformat(),
            "text": text,
            "language": lang,
        },
        now=NOW,
    )


def state(sid: str, crossings_24h: int, crossings_7d: int, **kinds: int) -> dict[str, Any]:
    counts = {"crossing_attempt": crossings_24h, **kinds}
    return {
        "section_id": sid,
        "country": sid[:2],
        "counts_24h": counts,
        "counts_7d": {**counts, "crossing_attempt": crossings_7d},
    }


def levels(a: Any) -> dict[str, str]:
    return {f.factor: f.level for f in a.factors}


def test_a_quiet_country_is_monitoring_only() -> None:
    a = assess("LV", [], [state("LV-KRA", 5, 35)], [], NOW)
    assert a.stage == "monitoring"
    assert set(levels(a).values()) == {"none"}
    assert a.to_dict()["summary"] == "No criterion is met beyond monitoring."


def test_military_activity_reports_raise_military_risk_with_their_ids() -> None:
    text = "The Belarusian side brought the migrants to the border in military vehicles."
    reports = [analysis(f"r{i}", text) for i in range(2)]
    a = assess("LV", reports, [], [], NOW)
    military = next(f for f in a.factors if f.factor == "military_risk")
    assert military.level == "high"  # two official reports: 2 + 2
    assert military.reports == ("r0", "r1")
    assert a.stage == "restrictions"


def test_old_reports_and_other_countries_do_not_count() -> None:
    text = "Belarusian intelligence services are behind the provocations."
    a = assess(
        "LV", [analysis("old", text, age_h=100), analysis("pl", text, country="PL")], [], [], NOW
    )
    assert levels(a)["intelligence_activity"] == "none"


def test_negated_incident_sentence_does_not_raise_border_incidents() -> None:
    a = assess("LV", [analysis("r", "Border guards did not have to use weapons.")], [], [], NOW)
    assert levels(a)["border_incidents"] == "none"


def test_migration_pressure_is_against_the_countrys_own_baseline() -> None:
    states = [state("PL-KUZ", 100, 210), state("PL-BIA", 50, 140)]  # 150 in 24 h vs 50 a day
    a = assess(
        "PL",
        [],
        states,
        [
            {
                "alert_id": "crossings-24h.PL-KUZ.1",
                "rule": "crossings-24h",
                "country": "PL",
                "status": "firing",
            }
        ],
        NOW,
    )
    pressure = next(f for f in a.factors if f.factor == "migration_pressure")
    assert pressure.level == "high" and pressure.alerts == ("crossings-24h.PL-KUZ.1",)
    # The section furthest above its own baseline decides: PL-KUZ, 100 against 30 a day.
    assert pressure.counts == {
        "crossing_attempt_24h": 150,
        "crossing_attempt_7d": 350,
        "PL-KUZ_crossing_attempt_24h": 100,
        "PL-KUZ_crossing_attempt_7d": 210,
    }
    # A section at its usual level is no pressure, however busy it is.
    calm = assess("PL", [], [state("PL-KUZ", 300, 2100)], [], NOW)
    assert next(f for f in calm.factors if f.factor == "migration_pressure").level == "low"
    # Under the minimum a spike counts for nothing (2 against 1 a week).
    tiny = assess("PL", [], [state("PL-KUZ", 2, 1)], [], NOW)
    assert next(f for f in tiny.factors if f.factor == "migration_pressure").level == "none"


def test_the_wording_names_criteria_and_never_says_to_close() -> None:
    texts = [
        "The Belarusian side brought the migrants to the border in military vehicles.",
        "Stones were thrown at patrols and border guards used force.",
        "Belarusian intelligence services are recruiting couriers.",
    ]
    reports = [analysis(f"r{i}-{j}", t) for i, t in enumerate(texts) for j in range(4)]
    reports.append(
        analysis("c", "The government is considering closing the border crossing points.")
    )
    a = assess("LV", reports, [state("LV-KRA", 10, 70, incident=4)], [], NOW)
    d = a.to_dict()
    assert d["stage"] == "full_closure_criteria_met"
    assert "military_risk (critical)" in d["summary"]
    assert "closure_considered" in d["measures_reported"]
    assert "should" not in d["summary"].lower() and "recommend" not in d["summary"].lower()
    assert [f["factor"] for f in d["factors"]] == list(FACTORS)


@given(st.dictionaries(st.sampled_from(FACTORS), st.sampled_from(LEVELS)))
def test_the_stage_never_falls_when_a_factor_rises(lv: dict[str, str]) -> None:
    base = stage_for(lv)
    for factor in FACTORS:
        current = lv.get(factor, "none")
        for higher in LEVELS[LEVELS.index(current) :]:
            assert STAGES.index(stage_for({**lv, factor: higher})) >= STAGES.index(base)


def test_every_assessment_fits_the_contract() -> None:
    from schemas.models import CountryAssessment
    from services.api.examples import ASSESSMENT

    texts = ["Stones were thrown at patrols.", "NGOs warn of pushbacks."]
    a = assess("LT", [analysis(f"r{i}", t, country="LT") for i, t in enumerate(texts)], [], [], NOW)
    CountryAssessment.model_validate(a.to_dict())
    CountryAssessment.model_validate(ASSESSMENT)
