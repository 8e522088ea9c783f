"""Factories shared by the unit tests: valid events and sections, a fixed clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.common.catalogue import Section

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "deploy" / "config"

# A fixed "now" (12:30 UTC) so bucket boundaries are easy to read: the current
# hourly bucket starts at 12:00.
NOW = datetime(2026, 11, 22, 12, 30, tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def field_event(**overrides: Any) -> dict[str, Any]:
    """A valid field event as a client posts it (JSON types)."""
    event: dict[str, Any] = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "kind": "crossing_attempt",
        "section_id": "LV-KRA",
        "observed_at": iso(NOW - 600),
        "count": 3,
        "source": {"type": "thermal_camera", "id": "LV-KRA-TC-04"},
        "confidence": "high",
    }
    event.update(overrides)
    return event


def section(section_id: str = "LV-KRA", **overrides: Any) -> Section:
    country = section_id.split("-", 1)[0]
    data: dict[str, Any] = {
        "id": section_id,
        "name": f"Section {section_id}",
        "country": country,
        "neighbour": "BY",
        "centre": {"lat": 55.85, "lon": 27.2},
        "polyline": [[55.72, 27.0], [55.8, 27.12]],
        "sensors": ["thermal_camera"],
    }
    data.update(overrides)
    return Section.model_validate(data)
