"""HTTP routes of the ingest service."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import Counter, Histogram

from schemas.models import FieldEvent
from services.common.auth import Principal, require
from services.common.http import JSONBytes
from services.ingest.producer import BrokerUnavailable
from services.ingest.validation import BodyError, check_events, parse_body

router = APIRouter()

ACCEPTED = Counter(
    "bw_ingest_events_accepted_total", "Field events acknowledged by Kafka", ["kind"]
)
REJECTED = Counter("bw_ingest_events_rejected_total", "Field events refused", ["reason"])
UNAVAILABLE = Counter(
    "bw_ingest_broker_unavailable_total", "Requests answered 503 because Kafka did not ack"
)
REQUEST_SECONDS = Histogram(
    "bw_ingest_request_seconds",
    "Field-event request latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRODUCE_SECONDS = Histogram(
    "bw_ingest_produce_seconds",
    "Time until Kafka acknowledged a request's records",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "bw_ingest_batch_events", "Events per request", buckets=(1, 10, 100, 1000, 5000, 10000)
)

_EVENT_SCHEMA = FieldEvent.model_json_schema(ref_template="#/components/schemas/{model}")
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/FieldEvent"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/FieldEvent"}},
                    ]
                }
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


def _error(status: int, detail: str, **extra: Any) -> JSONBytes:
    headers = {"Retry-After": str(extra.pop("retry_after"))} if "retry_after" in extra else None
    return JSONBytes({"detail": detail, **extra}, status_code=status, headers=headers)


@router.post(
    "/v1/field-events",
    status_code=202,
    tags=["ingest"],
    summary="Post one field event, a JSON array or NDJSON",
    openapi_extra=_BODY,
    responses={
        202: {"description": "Accepted: the broker acknowledged every accepted event."},
        413: {"description": "Too many events or too large a body; the limit is named."},
        422: {"description": "No event was valid; each bad field is named."},
        503: {"description": "Kafka did not acknowledge in time; nothing accepted. Retry."},
    },
)
async def post_field_events(
    request: Request, principal: Annotated[Principal, Depends(require("ingest:field"))]
) -> JSONBytes:
    started = time.perf_counter()
    settings = request.app.state.settings
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        return _error(413, f"body larger than the {settings.max_body_bytes}-byte limit")
    try:
        items = parse_body(body, request.headers.get("content-type", ""), settings.max_events)
    except BodyError as exc:
        REJECTED.labels("body").inc()
        return _error(422, str(exc), errors=[{"field": "(body)", "reason": str(exc)}])
    if len(items) > settings.max_events:
        return _error(413, f"more than the {settings.max_events}-event limit in one request")
    BATCH_SIZE.observe(len(items))
    checked = check_events(
        items,
        request.app.state.catalogue,
        time.time(),
        settings.future_tolerance_seconds,
        settings.max_age_seconds,
    )
    rejected = [p.as_dict() for p in checked.problems]
    for p in checked.problems:
        REJECTED.labels("section" if p.field == "section_id" else "invalid").inc()
    if not checked.valid:
        return _error(422, "no valid event in the request", errors=rejected)
    events = [e for _, e in checked.valid]
    try:
        took = await request.app.state.events.publish(events)
    except BrokerUnavailable:
        UNAVAILABLE.inc()
        return _error(503, "Kafka did not acknowledge in time; nothing was accepted", retry_after=2)
    PRODUCE_SECONDS.observe(took)
    for e in events:
        ACCEPTED.labels(e.kind.value).inc()
    REQUEST_SECONDS.observe(time.perf_counter() - started)
    return JSONBytes(
        {
            "accepted": [str(e.event_id) for e in events],
            "rejected": rejected,
        },
        status_code=202,
    )
