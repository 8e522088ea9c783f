"""The FieldEvent contract: what a sender may post and what is refused, and why."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.models import FieldEvent, personal_data_reason
from tests.unit.factories import field_event


def _errors(data: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as info:
        FieldEvent.model_validate(data)
    return list(info.value.errors(include_url=False))


def _locs(data: dict[str, Any]) -> list[str]:
    return [".".join(str(p) for p in err["loc"]) for err in _errors(data)]


def test_the_documented_example_is_a_valid_event() -> None:
    example = FieldEvent.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]

    event = FieldEvent.model_validate(example)

    assert event.section_id == "LV-KRA"
    assert event.count == 12
    assert event.kind == "crossing_attempt"
    assert event.observed_at.utcoffset() is not None
    assert event.observed_at.isoformat() == "2026-11-22T03:12:00+02:00"
    assert event.location is not None and event.location.lat == 55.86
    assert event.attributes == {}


def test_a_valid_event_round_trips_through_json() -> None:
    event = FieldEvent.model_validate(field_event(attributes={"terrain": "forest"}))

    again = FieldEvent.model_validate_json(event.model_dump_json())

    assert again == event


def test_unknown_top_level_fields_are_rejected() -> None:
    errors = _errors(field_event(person="Jane Doe"))

    assert [(e["loc"], e["type"]) for e in errors] == [(("person",), "extra_forbidden")]


def test_unknown_nested_fields_are_rejected() -> None:
    data = field_event(source={"type": "drone", "id": "D-1", "operator": "x"})

    assert _locs(data) == ["source.operator"]


@pytest.mark.parametrize("count", [0, -1, 10_001])
def test_count_must_be_between_1_and_10000(count: int) -> None:
    assert _locs(field_event(count=count)) == ["count"]


@pytest.mark.parametrize("count", [1, 10_000])
def test_count_bounds_are_inclusive(count: int) -> None:
    assert FieldEvent.model_validate(field_event(count=count)).count == count


def test_observed_at_without_an_offset_is_rejected() -> None:
    errors = _errors(field_event(observed_at="2026-11-22T03:12:00"))

    assert [(e["loc"], e["type"]) for e in errors] == [(("observed_at",), "timezone_aware")]


@pytest.mark.parametrize("observed_at", ["2026-11-22T03:12:00Z", "2026-11-22T03:12:00+02:00"])
def test_observed_at_with_an_offset_is_accepted(observed_at: str) -> None:
    event = FieldEvent.model_validate(field_event(observed_at=observed_at))

    assert event.observed_at.utcoffset() is not None


@pytest.mark.parametrize("section_id", ["lv-kra", "LVKRA", "LV-K", "LVA-KRA", "LV-KRA-1", ""])
def test_section_id_must_match_the_catalogue_pattern(section_id: str) -> None:
    errors = _errors(field_event(section_id=section_id))

    assert [(e["loc"], e["type"]) for e in errors] == [(("section_id",), "string_pattern_mismatch")]


@pytest.mark.parametrize("kind", ["sighting", "Crossing_Attempt", ""])
def test_kind_must_be_one_of_the_known_kinds(kind: str) -> None:
    errors = _errors(field_event(kind=kind))

    assert [(e["loc"], e["type"]) for e in errors] == [(("kind",), "enum")]
    assert "crossing_attempt" in errors[0]["msg"]


@pytest.mark.parametrize(
    "key", ["passport_no", "phone", "first_name", "face_image", "passportNo", "Phone-Number"]
)
def test_attribute_keys_naming_personal_data_are_refused_with_an_explanation(key: str) -> None:
    errors = _errors(field_event(attributes={"terrain": "forest", key: "x"}))

    assert len(errors) == 1
    assert errors[0]["loc"] == ("attributes",)
    message = errors[0]["msg"]
    assert repr(key) in message
    assert "looks like personal data" in message
    assert "never a person's identity" in message


@pytest.mark.parametrize(
    "key", ["terrain", "weather", "group_size", "plateau", "vehicle_count", "adobe"]
)
def test_harmless_attribute_keys_pass(key: str) -> None:
    event = FieldEvent.model_validate(field_event(attributes={key: "x"}))

    assert event.attributes == {key: "x"}
    assert personal_data_reason(key) is None


def test_harmless_attribute_values_keep_their_types() -> None:
    attributes = {
        "terrain": "swamp",
        "weather": "fog",
        "group_size": 14,
        "temp_c": -3.5,
        "armed": False,
    }

    event = FieldEvent.model_validate(field_event(attributes=attributes))

    assert event.attributes == attributes
    assert type(event.attributes["group_size"]) is int
    assert type(event.attributes["armed"]) is bool


def test_32_attributes_are_accepted_but_33_are_refused() -> None:
    attributes = {f"extra_{i}": i for i in range(33)}
    first_32 = dict(list(attributes.items())[:32])
    assert FieldEvent.model_validate(field_event(attributes=first_32)).attributes == first_32

    errors = _errors(field_event(attributes=attributes))

    assert [(e["loc"], e["type"]) for e in errors] == [(("attributes",), "too_long")]


def test_attribute_values_are_bounded() -> None:
    assert _locs(field_event(attributes={"note": "x" * 257})) != []
    assert _locs(field_event(attributes={"x" * 65: 1})) != []


def test_events_are_immutable() -> None:
    event = FieldEvent.model_validate(field_event())

    with pytest.raises(ValidationError):
        event.count = 99  # type: ignore[misc]


@pytest.mark.parametrize("key", ["faceImage", "phoneNumber", "firstName", "PassportNo"])
def test_camel_case_personal_data_keys_are_refused(key: str) -> None:
    assert personal_data_reason(key) is not None


def test_an_ack_never_carries_a_pasted_token() -> None:
    from pydantic import ValidationError

    from schemas.models import AckRequest

    token = "bw_3fa85f64_" + "Zk9" * 11
    for body in ({"by": "desk", "comment": f"use {token}"}, {"comment": token}):
        with pytest.raises(ValidationError, match="looks like an access token"):
            AckRequest.model_validate(body)
    assert AckRequest.model_validate({"comment": "bw_ prefix alone is fine"}).by is None
