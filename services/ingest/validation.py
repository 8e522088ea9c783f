"""Validation of posted field events beyond parsing: schema, catalogue, time bounds.

Every refused item is explained by index, field path and reason, so a client
knows exactly what to fix and resend.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.models import FieldEvent


class BodyError(ValueError):
    """The body as a whole cannot be read (not JSON, wrong top-level type, too many items)."""


@dataclass
class Problem:
    index: int
    field: str
    reason: str
    event_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "field": self.field, "reason": self.reason}
        if self.event_id:
            out["event_id"] = self.event_id
        return out


@dataclass
class Checked:
    valid: list[tuple[int, FieldEvent]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def rejected_indexes(self) -> set[int]:
        return {p.index for p in self.problems}


def parse_body(body: bytes, content_type: str, max_events: int) -> list[Any]:
    """The items of a JSON object, JSON array or NDJSON body."""
    if not body.strip():
        raise BodyError("the body is empty; send a field event, a JSON array or NDJSON")
    if "ndjson" in content_type or "jsonlines" in content_type:
        items = []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise BodyError(f"line {n}: not valid JSON: {exc}") from exc
            if len(items) > max_events:
                break
    else:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BodyError(f"not valid JSON: {exc}") from exc
        if isinstance(parsed, dict):
            items = [parsed]
        elif isinstance(parsed, list):
            items = parsed
        else:
            raise BodyError("expected a field event object or a JSON array of them")
    if not items:
        raise BodyError("no events in the body")
    return items


def _event_id(item: Any) -> str | None:
    if isinstance(item, dict) and isinstance(item.get("event_id"), str):
        return str(item["event_id"])[:64]
    return None


def check_events(
    items: list[Any],
    sections: Collection[str],
    now: float,
    future_tolerance: int,
    max_age: int,
) -> Checked:
    out = Checked()
    for index, item in enumerate(items):
        try:
            event = FieldEvent.model_validate(item)
        except ValidationError as exc:
            section = item.get("section_id") if isinstance(item, dict) else None
            if isinstance(section, str) and section not in sections:
                out.problems.append(
                    Problem(index, "section_id", f"unknown section {section!r}", _event_id(item))
                )
            for err in exc.errors(include_url=False):
                out.problems.append(
                    Problem(
                        index,
                        ".".join(str(p) for p in err["loc"]) or "(event)",
                        err["msg"],
                        _event_id(item),
                    )
                )
            continue
        eid = str(event.event_id)
        bad = False
        if event.section_id not in sections:
            out.problems.append(
                Problem(index, "section_id", f"unknown section {event.section_id!r}", eid)
            )
            bad = True
        ts = event.observed_at.timestamp()
        if ts > now + future_tolerance:
            out.problems.append(
                Problem(
                    index,
                    "observed_at",
                    f"more than {future_tolerance}s in the future (clock skew?)",
                    eid,
                )
            )
            bad = True
        elif ts < now - max_age:
            out.problems.append(
                Problem(index, "observed_at", f"older than the {max_age}s retention", eid)
            )
            bad = True
        if not bad:
            out.valid.append((index, event))
    return out
