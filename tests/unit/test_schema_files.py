"""The committed JSON Schema files are the models' export and describe real messages."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel

from schemas import export
from schemas.models import FieldEvent
from services.aggregator.rules import ThresholdRule, evaluate
from services.aggregator.state import BatchOutcome, Engine, SectionAggregate
from services.common.catalogue import Catalogue
from services.ingest.producer import batch_records
from tests.unit.factories import NOW, field_event, iso, section

# jsonschema checks "date-time" only with an optional extra installed; an RFC 3339
# pattern here keeps the check (offset required) without the extra.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker()
FORMATS.checks("date-time")(lambda value: not isinstance(value, str) or bool(_RFC3339.match(value)))


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads(export.path_for(name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=FORMATS)


def _problems(name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in _validator(name).iter_errors(instance)
    ]


def _rule() -> ThresholdRule:
    return ThresholdRule(
        id="crossings-24h",
        type="threshold",
        kinds=["crossing_attempt"],
        window="24h",
        severity={"low": 10, "medium": 30, "high": 50},
    )


@pytest.mark.parametrize(("name", "model"), list(export.CONTRACT.items()))
def test_committed_schema_file_is_the_export_of_its_model(
    name: str, model: type[BaseModel]
) -> None:
    path = export.path_for(name)
    assert path.exists(), f"{path} is missing: run `borderwatch schemas export`"

    committed = path.read_text(encoding="utf-8")

    assert committed == export.render(name, model), (
        f"{path.name} differs from the {model.__name__} model: "
        "run `borderwatch schemas export` and commit the result"
    )


def test_no_schema_is_stale() -> None:
    assert export.stale() == []


@pytest.mark.parametrize("name", list(export.CONTRACT))
def test_schema_file_is_valid_json_schema_2020_12(name: str) -> None:
    schema = json.loads(export.path_for(name).read_text(encoding="utf-8"))

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://borderwatch.example/schemas/{name}.schema.json"


def test_field_event_schema_accepts_the_documented_example() -> None:
    example = FieldEvent.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]

    assert _problems("field-event", example) == []


def test_field_event_schema_accepts_an_event_as_clients_post_it() -> None:
    assert _problems("field-event", field_event(attributes={"terrain": "forest"})) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"count": 0}, "count"),
        ({"person": "x"}, "(root)"),
        ({"section_id": "lv-kra"}, "section_id"),
        ({"kind": "sighting"}, "kind"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"observed_at": "2026-11-22T03:12:00"}, "observed_at"),
    ],
)
def test_field_event_schema_refuses_what_the_model_refuses(
    change: dict[str, Any], where: str
) -> None:
    problems = _problems("field-event", field_event(**change))

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{where}:")


def test_field_event_batch_schema_accepts_a_record_as_ingest_produces_it() -> None:
    events = [
        FieldEvent.model_validate(field_event()),
        FieldEvent.model_validate(
            field_event(kind="detection", location={"lat": 55.8, "lon": 27.1})
        ),
    ]
    [(key, value, _ts)] = batch_records(events, record_max_events=100)

    record = orjson.loads(value)

    assert key == "LV-KRA"
    assert _problems("field-event-batch", record) == []
    assert _problems("field-event-batch", {**record, "events": []}) != []


def test_section_state_schema_accepts_a_state_built_by_the_engine() -> None:
    engine = Engine(Catalogue([section("LV-KRA")]), [_rule()])
    agg = SectionAggregate(section_id="LV-KRA")
    events = [field_event(count=40, observed_at=iso(NOW - 3600)), field_event(kind="detection")]
    engine.apply_record(agg, 0, 0, events, BatchOutcome())

    publication = engine.refresh(agg, NOW)

    assert publication.state is not None
    state = orjson.loads(orjson.dumps(publication.state.model_dump(mode="json")))
    assert state["firing_alerts"] == ["crossings-24h.LV-KRA.1"]
    assert _problems("section-state", state) == []
    assert _problems("section-state", {**state, "level": "extreme"}) != []


def test_alert_schema_accepts_firing_and_resolved_transitions() -> None:
    rule, kra = _rule(), section("LV-KRA")
    episode, firing = evaluate(rule, kra, 57, None, 0, NOW)
    _, resolved = evaluate(rule, kra, 0, episode, 0, NOW + 3600)
    assert firing is not None and resolved is not None

    for alert in (firing, resolved):
        instance = orjson.loads(orjson.dumps(alert.model_dump(mode="json")))
        assert _problems("alert", instance) == [], alert.status
    assert _problems("alert", {**firing.model_dump(mode="json"), "seq": 0}) != []


def test_the_date_time_format_is_really_checked() -> None:
    # Guards the checker above: without it jsonschema would accept any string.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"updated_at": "yesterday"},
            {"properties": {"updated_at": {"type": "string", "format": "date-time"}}},
            format_checker=FORMATS,
        )
