"""Validation of posted items beyond parsing: schema, catalogue, time bounds.

Every refused item is explained by index, field path and reason, so a client
knows exactly what to fix and resend. Plain Python (no FastAPI), unit-tested on
its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.models import FieldEvent, ReportEvent
from services.ingest.errors import BodyError

__all__ = ["BodyError", "Parsed", "Problem", "check_events", "check_reports", "read_items"]

MediaKind = Literal["json", "ndjson"]

JSON_TYPES = ("application/json",)
NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonlines",
    "application/x-jsonlines",
    "application/jsonl",
)

# One pydantic-core call for a whole batch is ~1.5x faster than one call per item.
_EVENT_LIST: TypeAdapter[list[FieldEvent]] = TypeAdapter(list[FieldEvent])


def media_kind(content_type: str) -> MediaKind | None:
    """How to read a body of this Content-Type; None when it is not supported.

    A missing Content-Type is read as JSON (curl -d without -H is then refused by
    the parser, not silently taken as a form)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if (
        not media
        or media in JSON_TYPES
        or (media.startswith("application/") and media.endswith("+json"))
    ):
        return "json"
    if media in NDJSON_TYPES:
        return "ndjson"
    return None


@dataclass
class Problem:
    index: int
    field: str
    reason: str
    event_id: str | None = None
    id_key: str = "event_id"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "field": self.field, "reason": self.reason}
        if self.event_id:
            out[self.id_key] = self.event_id
        return out


@dataclass
class Checked:
    valid: list[tuple[int, FieldEvent]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def rejected_indexes(self) -> set[int]:
        return {p.index for p in self.problems}


@dataclass
class CheckedReports:
    valid: list[tuple[int, ReportEvent]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Parsed:
    """The items of a body, and where known the exact bytes each came from."""

    items: list[Any]
    raws: list[bytes] | None = None  # per item: NDJSON lines, or a single object's body
    body: bytes | None = None  # a JSON array body as received

    def array(self) -> bytes:
        """The items as one JSON array, from the bytes received where possible."""
        if self.raws is not None:
            return b"[" + b",".join(self.raws) + b"]"
        return self.body if self.body is not None else orjson.dumps(self.items)

    def raw(self, index: int) -> bytes:
        """The bytes of item ``index``: the exact NDJSON line or single-object body; for
        an item of a JSON array, the item re-serialised compactly."""
        if self.raws is not None:
            return self.raws[index]
        return orjson.dumps(self.items[index])


def read_items(
    body: bytes, kind: MediaKind, max_events: int, what: str = "field event", plural: str = "events"
) -> Parsed:
    """The items of a JSON object, JSON array or NDJSON body.

    NDJSON reading stops one item past ``max_events`` so the caller can refuse
    the request without parsing the rest."""
    if not body.strip():
        raise BodyError(f"the body is empty; send a {what}, a JSON array or NDJSON")
    if kind == "ndjson":
        items: list[Any] = []
        raws: list[bytes] = []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise BodyError(f"line {n}: not valid JSON: {exc}") from exc
            raws.append(line)
            if len(items) > max_events:
                break
        parsed = Parsed(items, raws)
    else:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BodyError(f"not valid JSON: {exc}") from exc
        if isinstance(value, dict):
            parsed = Parsed([value], [body])
        elif isinstance(value, list):
            parsed = Parsed(value, body=body)
        else:
            raise BodyError(f"expected a {what} object or a JSON array of them")
    if not parsed.items:
        raise BodyError(f"no {plural} in the body")
    return parsed


def parse_body(body: bytes, content_type: str, max_events: int) -> list[Any]:
    """The items of a JSON object, JSON array or NDJSON body (by Content-Type)."""
    kind: MediaKind = "ndjson" if "ndjson" in content_type or "jsonl" in content_type else "json"
    return read_items(body, kind, max_events).items


def item_id(item: Any, key: str = "event_id") -> str | None:
    """The item's id as sent, if it is a string (bounded, for error reports)."""
    if isinstance(item, dict) and isinstance(item.get(key), str):
        return str(item[key])[:128]
    return None


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ".".join(str(p) for p in loc) or "(event)"
    return path if len(path) <= 200 else path[:200] + "…"


# pydantic reports a failed union once per member, tagged with the member's name
# (``attributes.k.constrained-str``, ``attributes.k.int``, ...). A client wants one
# line: the member matching what it sent, or what the union accepts.
_UNION_TAGS: dict[str, type] = {
    "constrained-str": str,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}
_ATTRIBUTE_UNION = "Input should be a string of at most 256 characters, a number or a boolean"


def _item_errors(errors: list[Any]) -> list[tuple[str, str]]:
    """(field path, message) of one item's pydantic errors (locs relative to the item),
    one entry per failed union."""
    out: list[tuple[str, str]] = []
    unions: dict[tuple[Any, ...], tuple[int, list[Any]]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        if loc and loc[-1] in _UNION_TAGS:
            if loc[:-1] not in unions:
                unions[loc[:-1]] = (len(out), [])
                out.append(("", ""))  # placeholder keeps the order
            unions[loc[:-1]][1].append(err)
        else:
            out.append((_field_path(loc), err["msg"]))
    for prefix, (slot, members) in unions.items():
        value = members[0].get("input")
        chosen = next((m for m in members if type(value) is _UNION_TAGS[m["loc"][-1]]), None)
        out[slot] = (_field_path(prefix), chosen["msg"] if chosen else _ATTRIBUTE_UNION)
    return out


def outside(countries: Collection[str], country: str) -> str | None:
    """Why a token limited to ``countries`` (empty: all) may not post for ``country``."""
    if not countries or country in countries:
        return None
    return f"outside this token's countries ({', '.join(sorted(countries))})"


def check_events(
    items: list[Any],
    sections: Collection[str],
    now: float,
    future_tolerance: int,
    max_age: int,
    raw: bytes | None = None,
    countries: Collection[str] = (),
) -> Checked:
    """Split ``items`` into valid field events and explained problems.

    Validation is strict JSON validation, as the published JSON Schema says (no
    ``"12"`` for 12, no ``false`` for 0.0). ``raw`` may carry the items as one JSON
    array (the body itself): validating those bytes directly is the fast path.
    ``countries`` limits the sections a country-scoped token may post for; a
    section outside them is refused before the catalogue is asked, so the answer
    is the same whether it exists or not."""
    out = Checked()
    try:
        events = _EVENT_LIST.validate_json(
            raw if raw is not None else orjson.dumps(items), strict=True
        )
        valid = list(enumerate(events))
    except ValidationError as exc:
        valid = _split_invalid(items, exc, sections, out.problems, countries)
    latest = now + future_tolerance
    oldest = now - max_age
    for index, event in valid:
        bad = False
        refused = outside(countries, event.section_id[:2])
        if refused is not None:
            out.problems.append(
                Problem(
                    index,
                    "section_id",
                    f"section {event.section_id!r} is {refused}",
                    str(event.event_id),
                )
            )
            bad = True
        elif event.section_id not in sections:
            out.problems.append(
                Problem(
                    index,
                    "section_id",
                    f"unknown section {event.section_id!r}",
                    str(event.event_id),
                )
            )
            bad = True
        ts = event.observed_at.timestamp()
        if ts > latest:
            out.problems.append(
                Problem(
                    index,
                    "observed_at",
                    f"more than {future_tolerance}s in the future (clock skew?)",
                    str(event.event_id),
                )
            )
            bad = True
        elif ts < oldest:
            out.problems.append(
                Problem(
                    index,
                    "observed_at",
                    f"older than the {max_age}s retention",
                    str(event.event_id),
                )
            )
            bad = True
        if not bad:
            out.valid.append((index, event))
    out.problems.sort(key=lambda p: p.index)  # stable: an item's problems keep their order
    return out


def _validate_each(items: list[Any]) -> tuple[dict[int, list[Any]], list[tuple[int, FieldEvent]]]:
    errors: dict[int, list[Any]] = {}
    valid = []
    for index, item in enumerate(items):
        try:
            valid.append((index, FieldEvent.model_validate_json(orjson.dumps(item), strict=True)))
        except ValidationError as exc:
            errors[index] = exc.errors(include_url=False)
    return errors, valid


def _split_invalid(
    items: list[Any],
    exc: ValidationError,
    sections: Collection[str],
    problems: list[Problem],
    countries: Collection[str] = (),
) -> list[tuple[int, FieldEvent]]:
    """Problems of the items a batch validation refused; the others, validated."""
    raw: dict[int, list[Any]] = defaultdict(list)
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if not loc or not isinstance(loc[0], int):
            # Not about one item (bytes the JSON parser read differently): item by item.
            raw.clear()
            break
        raw[loc[0]].append({**err, "loc": loc[1:]})
    if raw:
        good = [i for i in range(len(items)) if i not in raw]
        events = _EVENT_LIST.validate_json(orjson.dumps([items[i] for i in good]), strict=True)
        valid = list(zip(good, events, strict=True))
    else:
        raw_errors, valid = _validate_each(items)
        raw.update(raw_errors)
    for index, errors in sorted(raw.items()):
        item = items[index]
        eid = item_id(item)
        section = item.get("section_id") if isinstance(item, dict) else None
        refused = outside(countries, section[:2]) if isinstance(section, str) else None
        if isinstance(section, str) and refused is not None:
            problems.append(
                Problem(index, "section_id", f"section {section[:32]!r} is {refused}", eid)
            )
        elif isinstance(section, str) and section not in sections:
            problems.append(Problem(index, "section_id", f"unknown section {section[:32]!r}", eid))
        problems.extend(Problem(index, path, msg, eid) for path, msg in _item_errors(errors))
    return valid


def check_reports(
    items: list[Any],
    sections: Collection[str],
    now: float,
    future_tolerance: int,
    countries: Collection[str] = (),
) -> CheckedReports:
    """Split ``items`` into valid report events and explained problems (``countries``:
    those a country-scoped token may post about)."""
    out = CheckedReports()
    for index, item in enumerate(items):
        rid = item_id(item, "report_id")
        try:
            report = ReportEvent.model_validate_json(orjson.dumps(item), strict=True)
        except ValidationError as exc:
            out.problems.extend(
                Problem(index, path, msg, rid, "report_id")
                for path, msg in _item_errors(exc.errors(include_url=False))
            )
            continue
        bad = False
        refused = outside(countries, report.country)
        if refused is not None:
            out.problems.append(
                Problem(
                    index, "country", f"country {report.country!r} is {refused}", rid, "report_id"
                )
            )
            bad = True
        if report.published_at.timestamp() > now + future_tolerance:
            out.problems.append(
                Problem(
                    index,
                    "published_at",
                    f"more than {future_tolerance}s in the future (clock skew?)",
                    rid,
                    "report_id",
                )
            )
            bad = True
        for n, figure in enumerate(report.figures):
            refused = outside(countries, figure.section_id[:2]) if figure.section_id else None
            if figure.section_id is not None and refused is not None:
                out.problems.append(
                    Problem(
                        index,
                        f"figures.{n}.section_id",
                        f"section {figure.section_id!r} is {refused}",
                        rid,
                        "report_id",
                    )
                )
                bad = True
            elif figure.section_id is not None and figure.section_id not in sections:
                out.problems.append(
                    Problem(
                        index,
                        f"figures.{n}.section_id",
                        f"unknown section {figure.section_id!r}",
                        rid,
                        "report_id",
                    )
                )
                bad = True
        if not bad:
            out.valid.append((index, report))
    return out
