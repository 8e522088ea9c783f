"""The assessor's picture: discrepancy transitions and changed assessments to publish."""

from __future__ import annotations

from datetime import timedelta

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
