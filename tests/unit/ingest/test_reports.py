"""Report events: the model (size in bytes, personal data, periods) and the checks beyond it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas import export
from schemas.models import ReportEvent
from services.ingest.validation import check_reports, media_kind
from tests.unit.factories import NOW, iso

SECTIONS = frozenset({"LV-KRA", "LT-MED"})


def report(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "report_id": "vpd-lv-2026-11-22-01",
        "source": {"name": "State Border Guard", "type": "official", "url": "https://rs.gov.lv/"},
        "country": "LV",
        "published_at": iso(NOW - 3600),
        "title": "Attempts in the last 24 hours",
        "text": "57 attempts to cross the border were prevented.",
        "language": "lv",
        "figures": [{"kind": "crossing_attempt", "count": 57, "section_id": "LV-KRA"}],
    }
    data.update(overrides)
    return data


def _fields(items: list[Any]) -> list[tuple[int, str]]:
    return [(p.index, p.field) for p in check_reports(items, SECTIONS, NOW, 300).problems]


def test_the_documented_example_is_valid_for_the_model_and_the_schema() -> None:
    example = ReportEvent.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
    schema = json.loads(export.path_for("report-event").read_text(encoding="utf-8"))

    ReportEvent.model_validate(example)
    assert list(Draft202012Validator(schema).iter_errors(example)) == []


def test_text_is_limited_to_100_kb_of_utf8_not_characters() -> None:
    ReportEvent.model_validate(report(text="a" * 100_000))
    ReportEvent.model_validate(report(text="ā" * 50_000))

    with pytest.raises(ValidationError, match="100002 bytes of UTF-8"):
        ReportEvent.model_validate(report(text="ā" * 50_001))


def test_a_valid_report_passes_with_its_index() -> None:
    checked = check_reports([report(), report(report_id="b", figures=[])], SECTIONS, NOW, 300)

    assert checked.problems == []
    assert [i for i, _ in checked.valid] == [0, 1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source": {"name": "X", "type": "rumour"}}, "source.type"),
        ({"source": {"name": "X", "type": "media", "url": "ftp://x"}}, "source.url"),
        ({"country": "Latvia"}, "country"),
        ({"language": "Latvian"}, "language"),
        ({"report_id": "has space"}, "report_id"),
        ({"published_at": "2026-11-22T10:00:00"}, "published_at"),
        ({"title": ""}, "title"),
        ({"author": "Jane Doe"}, "author"),
        ({"figures": [{"kind": "detection", "count": -1}]}, "figures.0.count"),
        (
            {"figures": [{"kind": "detection", "count": 1, "attributes": {"surname": "X"}}]},
            "figures.0.attributes",
        ),
        (
            {
                "figures": [
                    {
                        "kind": "detection",
                        "count": 1,
                        "period_start": iso(NOW),
                        "period_end": iso(NOW - 60),
                    }
                ]
            },
            "figures.0.period_end",
        ),
        (
            {"figures": [{"kind": "detection", "count": 1, "section_id": "EE-NAR"}]},
            "figures.0.section_id",
        ),
        ({"published_at": iso(NOW + 301)}, "published_at"),
    ],
)
def test_each_fault_is_named_by_its_field(change: dict[str, Any], field: str) -> None:
    assert _fields([report(**change)]) == [(0, field)]


def test_personal_data_in_figures_is_explained() -> None:
    [problem] = check_reports(
        [report(figures=[{"kind": "apprehension", "count": 2, "attributes": {"passport": "X"}}])],
        SECTIONS,
        NOW,
        300,
    ).problems

    assert "looks like personal data" in problem.reason
    assert problem.as_dict()["report_id"] == "vpd-lv-2026-11-22-01"


def test_strict_json_types_as_the_schema_says() -> None:
    assert _fields([report(figures=[{"kind": "detection", "count": "3"}])]) == [
        (0, "figures.0.count")
    ]


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/cloudevents+json", "json"),
        ("", "json"),
        ("application/x-ndjson", "ndjson"),
        ("Application/NDJSON", "ndjson"),
        ("application/jsonl", "ndjson"),
        ("text/plain", None),
        ("application/x-www-form-urlencoded", None),
        ("multipart/form-data; boundary=x", None),
    ],
)
def test_media_kinds(content_type: str, kind: str | None) -> None:
    assert media_kind(content_type) == kind
