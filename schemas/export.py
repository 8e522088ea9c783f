"""Export the JSON Schema (2020-12) files of the wire contract from the models.

Run ``borderwatch schemas export`` after changing a model; ``--check`` exits
non-zero when a committed file differs from its model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.models import (
    Alert,
    AlertAck,
    AuditRecord,
    CountryAssessment,
    DeadLetter,
    FieldEvent,
    FieldEventBatch,
    ReportAnalysis,
    ReportEvent,
    SectionHour,
    SectionState,
)

SCHEMA_DIR = Path(__file__).resolve().parent

CONTRACT: dict[str, type[BaseModel]] = {
    "field-event": FieldEvent,
    "field-event-batch": FieldEventBatch,
    "section-state": SectionState,
    "section-hour": SectionHour,
    "alert": Alert,
    "alert-ack": AlertAck,
    "report-event": ReportEvent,
    "report-analysis": ReportAnalysis,
    "assessment": CountryAssessment,
    "dead-letter": DeadLetter,
    "audit": AuditRecord,
}


def schema_for(name: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(
        mode="serialization" if name != "field-event" else "validation"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://borderwatch.example/schemas/{name}.schema.json",
        **schema,
    }


def render(name: str, model: type[BaseModel]) -> str:
    return json.dumps(schema_for(name, model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def path_for(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.schema.json"


def export() -> list[Path]:
    written = []
    for name, model in CONTRACT.items():
        path = path_for(name)
        path.write_text(render(name, model), encoding="utf-8")
        written.append(path)
    return written


def stale() -> list[str]:
    """Names whose committed schema file differs from the model."""
    out = []
    for name, model in CONTRACT.items():
        path = path_for(name)
        if not path.exists() or path.read_text(encoding="utf-8") != render(name, model):
            out.append(name)
    return out
