"""The analysis as published: it validates as ``ReportAnalysis`` and against its schema file."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas import export
from schemas.models import ReportAnalysis
from services.reports import analyse
from tests.unit.reports.scoring import load

PUB = datetime.fromisoformat("2026-11-23T09:00:00+02:00")


def _message(lang: str) -> dict[str, object]:
    text = " ".join(c["text"] for c in load(lang)["cases"])
    a = analyse(text, country="LV", published_at=PUB, language=lang)
    return {
        "schema_version": 1,
        "report_id": f"r-{lang}",
        "country": "LV",
        "published_at": PUB.isoformat(),
        "source_type": "official",
        "analysed_at": datetime.now(UTC).isoformat(),
        **a.to_dict(),
    }


@pytest.mark.parametrize("lang", ["en", "pl", "lv", "lt"])
def test_every_fixture_analysis_fits_the_contract(lang: str) -> None:
    message = _message(lang)
    model = ReportAnalysis.model_validate(message)
    assert model.figures and model.signals
    schema = json.loads(export.path_for("report-analysis").read_text("utf-8"))
    Draft202012Validator(schema).validate(json.loads(model.model_dump_json()))


def test_a_figure_with_a_made_up_metric_is_refused_naming_the_field() -> None:
    message = _message("en")
    message["figures"] = [{**message["figures"][0], "metric": "crowds"}]  # type: ignore[index]
    with pytest.raises(ValidationError, match=r"figures\.0\.metric"):
        ReportAnalysis.model_validate(message)
