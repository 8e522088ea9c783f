"""Demo reports: statements agree or disagree with the demo's own field counts."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.models import ReportEvent
from services.demo.reports import ReportWriter
from services.reports.analysis import analysis_message

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp()


def crossing(sid: str, count: int, ts: float) -> dict[str, object]:
    return {
        "kind": "crossing_attempt",
        "section_id": sid,
        "count": count,
        "observed_at": datetime.fromtimestamp(ts, UTC).isoformat(),
    }


def test_statements_state_the_counts_or_disagree_one_time_in_three() -> None:
    w = ReportWriter(seed=1)
    w.observe([crossing("LV-KRA", 20, NOW - 3600), crossing("LV-SIL", 7, NOW - 60)])
    w.observe([crossing("LV-KRA", 99, NOW - 2 * 86400)])  # older than a day
    values = []
    for _ in range(6):
        report = w.statement("LV", NOW)
        ReportEvent.model_validate(report)
        (fig,) = analysis_message(report)["figures"]
        assert (fig["area"], fig["metric"], fig["period"]["label"]) == (
            "LV",
            "crossing_attempt",
            "day",
        )
        values.append(fig["value"])
    assert values.count(27) == 4 and values.count(27 * 3 + 40) == 2


def test_every_round_is_valid_and_analysed_in_its_language() -> None:
    w = ReportWriter(seed=2)
    for i in range(10):
        for report in w.round(NOW + i):
            ReportEvent.model_validate(report)
            analysed = analysis_message(report)
            assert analysed["language"] == report["language"]
            assert analysed["figures"] or analysed["signals"], report["text"]
