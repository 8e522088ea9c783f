"""Reading and checking posted field events: every refusal says which item, which
field and why."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.ingest.validation import BodyError, Problem, check_events, parse_body
from tests.unit.factories import NOW, field_event, iso

SECTIONS = frozenset({"LV-KRA", "LT-MED"})
FUTURE = 300
MAX_AGE = 7 * 24 * 3600


def _check(items: list[Any]) -> Any:
    return check_events(items, SECTIONS, NOW, FUTURE, MAX_AGE)


def _fields(problems: list[Problem]) -> list[tuple[int, str]]:
    return [(p.index, p.field) for p in problems]


# --- parse_body -------------------------------------------------------------------


def test_a_json_object_is_one_item() -> None:
    event = field_event()

    assert parse_body(orjson.dumps(event), "application/json", 10) == [event]


def test_a_json_array_is_its_items() -> None:
    events = [field_event(), field_event(kind="detection")]

    assert parse_body(orjson.dumps(events), "application/json", 10) == events


@pytest.mark.parametrize(
    "content_type",
    ["application/x-ndjson", "application/ndjson; charset=utf-8", "application/jsonlines"],
)
def test_ndjson_is_one_item_per_line_blank_lines_ignored(content_type: str) -> None:
    events = [field_event(), field_event(count=9)]
    body = b"\n".join(orjson.dumps(e) for e in events) + b"\n\n  \r\n"

    assert parse_body(body, content_type, 10) == events


def test_ndjson_stops_reading_past_the_limit_so_the_caller_can_refuse() -> None:
    body = b"\n".join(orjson.dumps(field_event()) for _ in range(5)) + b"\n{broken"

    items = parse_body(body, "application/x-ndjson", 2)

    assert len(items) == 3  # one over the limit, and the broken last line never read


def test_ndjson_names_the_bad_line() -> None:
    body = orjson.dumps(field_event()) + b"\n{not json}\n"

    with pytest.raises(BodyError, match=r"^line 2: not valid JSON"):
        parse_body(body, "application/x-ndjson", 10)


@pytest.mark.parametrize("body", [b"", b"  \n\t "])
def test_an_empty_body_is_explained(body: bytes) -> None:
    with pytest.raises(
        BodyError, match="the body is empty; send a field event, a JSON array or NDJSON"
    ):
        parse_body(body, "application/json", 10)


def test_not_json_is_explained() -> None:
    with pytest.raises(BodyError, match=r"^not valid JSON"):
        parse_body(b"kind=detection&count=3", "application/json", 10)


def test_ndjson_sent_as_json_is_not_json() -> None:
    body = orjson.dumps(field_event()) + b"\n" + orjson.dumps(field_event())

    with pytest.raises(BodyError, match=r"^not valid JSON"):
        parse_body(body, "application/json", 10)


@pytest.mark.parametrize("body", [b"42", b'"event"', b"null", b"true"])
def test_a_top_level_that_is_neither_object_nor_array_is_refused(body: bytes) -> None:
    with pytest.raises(BodyError, match="expected a field event object or a JSON array of them"):
        parse_body(body, "application/json", 10)


def test_an_empty_array_has_no_events() -> None:
    with pytest.raises(BodyError, match="no events in the body"):
        parse_body(b"[]", "application/json", 10)


# --- check_events -----------------------------------------------------------------


def test_valid_events_pass_with_their_index() -> None:
    events = [field_event(), field_event(section_id="LT-MED", kind="apprehension")]

    checked = _check(events)

    assert checked.problems == []
    assert [(i, e.section_id) for i, e in checked.valid] == [(0, "LV-KRA"), (1, "LT-MED")]
    assert [str(e.event_id) for _, e in checked.valid] == [e["event_id"] for e in events]


def test_an_unknown_section_is_named_with_the_field_section_id() -> None:
    event = field_event(section_id="EE-NAR")

    checked = _check([event])

    assert checked.valid == []
    assert [p.as_dict() for p in checked.problems] == [
        {
            "index": 0,
            "field": "section_id",
            "reason": "unknown section 'EE-NAR'",
            "event_id": event["event_id"],
        }
    ]


def test_an_unknown_section_is_reported_even_when_the_event_has_other_faults() -> None:
    checked = _check([field_event(section_id="EE-NAR", count=0)])

    assert _fields(checked.problems) == [(0, "section_id"), (0, "count")]
    assert checked.problems[0].reason == "unknown section 'EE-NAR'"


def test_observed_at_more_than_5_minutes_ahead_is_refused() -> None:
    ahead = field_event(observed_at=iso(NOW + FUTURE + 1))
    at_limit = field_event(observed_at=iso(NOW + FUTURE))

    checked = _check([ahead, at_limit])

    assert _fields(checked.problems) == [(0, "observed_at")]
    assert checked.problems[0].reason == "more than 300s in the future (clock skew?)"
    assert [i for i, _ in checked.valid] == [1]


def test_observed_at_older_than_the_retention_is_refused() -> None:
    too_old = field_event(observed_at=iso(NOW - MAX_AGE - 1))
    at_limit = field_event(observed_at=iso(NOW - MAX_AGE))

    checked = _check([too_old, at_limit])

    assert _fields(checked.problems) == [(0, "observed_at")]
    assert checked.problems[0].reason == f"older than the {MAX_AGE}s retention"
    assert [i for i, _ in checked.valid] == [1]


def test_problems_are_reported_per_index_with_field_paths() -> None:
    good = field_event()
    bad_source = field_event(source={"type": "satellite", "id": "S-1"})
    no_count = field_event()
    del no_count["count"]
    personal = field_event(attributes={"phone": "+371 2000 0000"})
    items: list[Any] = [good, bad_source, no_count, personal, "not an event", [1, 2]]

    checked = _check(items)

    assert [i for i, _ in checked.valid] == [0]
    assert _fields(checked.problems) == [
        (1, "source.type"),
        (2, "count"),
        (3, "attributes"),
        (4, "(event)"),
        (5, "(event)"),
    ]
    assert checked.rejected_indexes() == {1, 2, 3, 4, 5}
    by_index = {p.index: p for p in checked.problems}
    assert "'thermal_camera'" in by_index[1].reason
    assert by_index[1].event_id == bad_source["event_id"]
    assert by_index[2].reason == "Field required"
    assert "looks like personal data" in by_index[3].reason
    assert by_index[4].event_id is None
    assert "event_id" not in by_index[4].as_dict()


def test_several_faults_of_one_event_are_all_reported() -> None:
    event = field_event(count=0, kind="sighting", extra="x")

    checked = _check([event])

    assert sorted(_fields(checked.problems)) == [(0, "count"), (0, "extra"), (0, "kind")]
    assert checked.rejected_indexes() == {0}


# --- strict JSON types, one line per fault, bounded messages ---------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"count": "3"}, "count"),
        ({"count": 3.5}, "count"),
        ({"location": {"lat": False, "lon": 27.0}}, "location.lat"),
        ({"schema_version": 2}, "schema_version"),
        ({"observed_at": 1763800000}, "observed_at"),
        ({"confidence": ["high"]}, "confidence"),
    ],
)
def test_types_are_checked_as_strictly_as_the_json_schema_says(
    change: dict[str, Any], field: str
) -> None:
    checked = _check([field_event(**change)])

    assert _fields(checked.problems) == [(0, field)]


def test_a_bad_attribute_value_is_one_problem_that_says_what_is_allowed() -> None:
    checked = _check(
        [
            field_event(attributes={"terrain": "x" * 257}),
            field_event(attributes={"terrain": ["forest"]}),
        ]
    )

    assert [(p.index, p.field, p.reason) for p in checked.problems] == [
        (0, "attributes.terrain", "String should have at most 256 characters"),
        (
            1,
            "attributes.terrain",
            "Input should be a string of at most 256 characters, a number or a boolean",
        ),
    ]


def test_more_than_32_attributes_are_refused() -> None:
    checked = _check(
        [
            field_event(attributes={f"k{i}": i for i in range(33)}),
            field_event(attributes={f"k{i}": i for i in range(32)}),
        ]
    )

    assert _fields(checked.problems) == [(0, "attributes")]
    assert [i for i, _ in checked.valid] == [1]


@pytest.mark.parametrize("key", ["name", "Passport_No", "phone-number", "face_image", "DOB"])
def test_attribute_keys_naming_personal_data_are_refused_with_an_explanation(key: str) -> None:
    [problem] = _check([field_event(attributes={key: "x"})]).problems

    assert problem.field == "attributes"
    assert f"attribute key {key!r} looks like personal data" in problem.reason
    assert "never a person's identity" in problem.reason


def test_field_paths_and_echoed_sections_stay_short() -> None:
    checked = _check(
        [
            field_event(attributes={"k" * 10_000: 1}),
            field_event(section_id="X" * 10_000),
        ]
    )

    assert all(len(p.field) <= 201 and len(p.reason) < 300 for p in checked.problems)


def test_the_raw_array_fast_path_gives_the_same_answer() -> None:
    items = [field_event(), field_event(count=0), field_event(section_id="EE-NAR")]

    slow = _check(items)
    fast = check_events(items, SECTIONS, NOW, FUTURE, MAX_AGE, raw=orjson.dumps(items))

    assert [p.as_dict() for p in fast.problems] == [p.as_dict() for p in slow.problems]
    assert [(i, e) for i, e in fast.valid] == [(i, e) for i, e in slow.valid]


def test_bytes_the_two_parsers_read_differently_fall_back_to_item_by_item() -> None:
    items = [field_event(), field_event(count=0)]

    checked = check_events(items, SECTIONS, NOW, FUTURE, MAX_AGE, raw=b"[not json")

    assert _fields(checked.problems) == [(1, "count")]
    assert [i for i, _ in checked.valid] == [0]


def test_a_country_scoped_token_may_post_only_for_its_countries_sections() -> None:
    items = [
        field_event(section_id="LV-KRA"),
        field_event(section_id="LT-MED"),
        field_event(section_id="LT-NOPE"),  # unknown: refused the same way, no hint
        {**field_event(section_id="LT-MED"), "count": 0},  # invalid and outside
    ]
    checked = check_events(items, SECTIONS, NOW, FUTURE, MAX_AGE, countries={"LV"})

    assert [i for i, _ in checked.valid] == [0]
    outside = [p for p in checked.problems if p.field == "section_id"]
    assert [(p.index, p.reason) for p in outside] == [
        (1, "section 'LT-MED' is outside this token's countries (LV)"),
        (2, "section 'LT-NOPE' is outside this token's countries (LV)"),
        (3, "section 'LT-MED' is outside this token's countries (LV)"),
    ]
    # Without countries, every country's sections as before.
    assert [i for i, _ in _check(items[:2]).valid] == [0, 1]
