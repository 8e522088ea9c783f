"""Example responses for the API's OpenAPI document (what operators and
integrators see in /docs). They follow the contract models' shapes."""

from __future__ import annotations

from typing import Any

_COUNTS = {
    "detection": 61,
    "crossing_attempt": 57,
    "apprehension": 31,
    "incident": 2,
    "military_activity": 0,
    "humanitarian": 1,
}
_QUIET = dict.fromkeys(_COUNTS, 0)

SECTION: dict[str, Any] = {
    "section_id": "LV-KRA",
    "name": "Krāslava",
    "country": "LV",
    "neighbour": "BY",
    "centre": {"lat": 55.85, "lon": 27.2},
    "level": "high",
    "counts_1h": {**_QUIET, "detection": 12, "crossing_attempt": 12},
    "counts_24h": _COUNTS,
    "counts_7d": {**_COUNTS, "crossing_attempt": 164, "detection": 190},
    "last_event_at": "2026-11-22T03:12:00+00:00",
    "firing_alerts": ["crossings-24h.LV-KRA.3"],
    "version": 412,
    "updated_at": "2026-11-22T03:12:04+00:00",
}

SECTION_DETAIL: dict[str, Any] = {
    **SECTION,
    "polyline": [[55.72, 27.0], [55.8, 27.12], [55.83, 27.26]],
    "hourly": [
        {"start": "2026-11-22T03:00:00+00:00", "counts": {**_QUIET, "crossing_attempt": 12}}
    ],
    "history_since": "2026-11-15T04:00:00+00:00",
}

ALERT: dict[str, Any] = {
    "schema_version": 1,
    "alert_id": "crossings-24h.LV-KRA.3",
    "seq": 2,
    "rule": "crossings-24h",
    "section_id": "LV-KRA",
    "country": "LV",
    "status": "firing",
    "severity": "high",
    "value": 57,
    "threshold": 50,
    "window": "24h",
    "started_at": "2026-11-22T01:40:00+00:00",
    "updated_at": "2026-11-22T03:12:04+00:00",
    "resolved_at": None,
    "summary": "LV-KRA: 57 crossing attempts in 24 h ≥ high threshold 50",
    "acked": True,
    "acks": 1,
}

ACK: dict[str, Any] = {
    "schema_version": 1,
    "ack_id": "0b0c9a4e-2f0e-4a53-9d1a-5f3b8c2e7d11",
    "alert_id": "crossings-24h.LV-KRA.3",
    "seq": 2,
    "by": "LV duty officer",
    "comment": "patrol sent to the Daugava bend",
    "acked_at": "2026-11-22T03:14:30+00:00",
    "token_id": "3fa85f64",
    "token_label": "LV duty desk",
}

COUNTRY: dict[str, Any] = {
    "country": "LV",
    "level": "high",
    "sections": 5,
    "counts_1h": {**_QUIET, "crossing_attempt": 12},
    "counts_24h": {**_COUNTS, "crossing_attempt": 164},
    "counts_7d": {**_COUNTS, "crossing_attempt": 457},
    "firing_alerts": 2,
}


REPORT: dict[str, Any] = {
    "schema_version": 1,
    "report_id": "vpd-lv-2026-11-22-01",
    "source": {
        "name": "State Border Guard of Latvia",
        "type": "official",
        "url": "https://www.rs.gov.lv/",
    },
    "country": "LV",
    "published_at": "2026-11-22T09:00:00+02:00",
    "title": "Attempts to cross the border in the last 24 hours",
    "text": "In the last 24 hours 57 attempts to cross the border were prevented.",
    "language": "en",
    "figures": [],
    "analysis": {
        "figures": [
            {
                "area": "LV",
                "metric": "crossing_attempt",
                "value": 57,
                "qualifier": "exact",
                "period": {
                    "label": "day",
                    "start": "2026-11-21T09:00:00+02:00",
                    "end": "2026-11-22T09:00:00+02:00",
                },
                "evidence": "In the last 24 hours 57 attempts to cross the border were prevented.",
                "span": [20, 22],
                "source": "text",
            }
        ],
        "signals": [],
        "language": "en",
        "extractor": "bw-reports/1.0.0",
        "analysed_at": "2026-11-22T09:00:01+00:00",
    },
}


ASSESSMENT: dict[str, Any] = {
    "schema_version": 1,
    "country": "LV",
    "stage": "restrictions",
    "summary": "Criteria met correspond to restrictions on people, transport or goods.",
    "factors": [
        {
            "factor": factor,
            "level": level,
            "score": score,
            "evidence": {"reports": reports, "alerts": [], "counts": counts},
        }
        for factor, level, score, reports, counts in (
            (
                "military_risk",
                "elevated",
                2.0,
                ["vpd-lv-2026-11-22-01"],
                {"military_activity_24h": 0},
            ),
            ("intelligence_activity", "none", 0.0, [], {}),
            ("disinformation", "low", 1.0, ["lsm-2026-11-22-04"], {}),
            ("border_incidents", "none", 0.0, [], {"incident_24h": 0}),
            (
                "migration_pressure",
                "low",
                1.2,
                [],
                {"crossing_attempt_24h": 57, "crossing_attempt_7d": 330},
            ),
            ("humanitarian_situation", "none", 0.0, [], {"humanitarian_24h": 0}),
        )
    ],
    "measures_reported": ["state_of_emergency"],
    "assessed_at": "2026-11-22T09:00:05+00:00",
}

# GET /api/v1/state?at=2026-11-30T02:00:00Z: the picture rebuilt at a past hour.
PICTURE_AT: dict[str, Any] = {
    "at": "2026-11-30T02:00:00Z",
    "sections": [
        {
            **SECTION,
            "level": "medium",
            "counts_1h": {**_QUIET, "detection": 9, "crossing_attempt": 9},
            "counts_24h": {**_COUNTS, "crossing_attempt": 52, "detection": 55},
            "last_event_at": "2026-11-30T01:47:10Z",
            "firing_alerts": ["crossings-24h.LV-KRA.2"],
            "version": 0,
            "updated_at": "2026-11-30T02:00:00Z",
        }
    ],
    "countries": [
        {
            "country": "LV",
            "level": "medium",
            "sections": 5,
            "counts_1h": {**_QUIET, "detection": 9, "crossing_attempt": 9},
            "counts_24h": {**_COUNTS, "crossing_attempt": 52, "detection": 55},
            "counts_7d": {**_COUNTS, "crossing_attempt": 164, "detection": 190},
            "firing_alerts": 1,
        }
    ],
    "firing_alerts": [
        {
            **ALERT,
            "alert_id": "crossings-24h.LV-KRA.2",
            "seq": 1,
            "severity": "medium",
            "value": 52,
            "threshold": 50,
            "started_at": "2026-11-30T01:10:04+00:00",
            "updated_at": "2026-11-30T01:10:04+00:00",
            "summary": "LV-KRA: 52 crossing attempts in 24 h ≥ medium threshold 50",
            "acked": False,
            "acks": 0,
        }
    ],
}

AT_ERROR: dict[str, Any] = {
    "detail": "invalid request",
    "errors": [
        {
            "field": "query.at",
            "reason": "2026-11-20T02:00:00Z is older than the 7 days of history "
            "(the oldest is 2026-11-23T09:14:02Z)",
        }
    ],
}


def example(value: Any, description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"example": value}}}}
