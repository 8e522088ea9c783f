"""HTTP routes of the ingest service: field events, report events, dead letters.

Every 2xx means Kafka acknowledged (acks=all) every item listed as accepted or
duplicate. Each response lists each item's outcome, so a client knows exactly
what to resend.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaConsumer
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import TypeAdapter
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from schemas.models import AuditAction, ReportEvent
from services.common.audit import actor_of
from services.common.auth import Principal, admit_token, require
from services.common.http import JSONBytes
from services.common.ratelimit import RateLimiter
from services.common.topics import Topics
from services.ingest.deadletter import DeadLetterWriter, dead_letter, read_recent
from services.ingest.dedupe import Idempotency
from services.ingest.errors import BodyError, BodyTooLarge, BrokerUnavailable
from services.ingest.metrics import (
    ACCEPTED,
    BATCH_SIZE,
    DUPLICATE,
    RATE_LIMITED,
    REJECTED,
    REPORTS_ACCEPTED,
    REPORTS_DUPLICATE,
    REPORTS_REJECTED,
    UNAVAILABLE,
    count_rejections,
    series,
)
from services.ingest.producer import KafkaGate, Outgoing, section_records
from services.ingest.responses import DeadLetters, ErrorBody, FieldEventsResult, ReportsResult
from services.ingest.settings import IngestSettings
from services.ingest.validation import (
    NDJSON_TYPES,
    Parsed,
    Problem,
    check_events,
    check_reports,
    media_kind,
    read_items,
)

router = APIRouter()

FIELD_EVENTS = "/v1/field-events"
REPORTS = "/v1/reports"
DEAD_LETTER = "/v1/dead-letter"
ROUTES = (FIELD_EVENTS, REPORTS, DEAD_LETTER)
FIELD_SCOPE = "ingest:field"
# Requests with at least this many items yield the loop between parsing, checking
# and producing (see post_field_events).
YIELD_FROM_ITEMS = 100

_REPORT: TypeAdapter[ReportEvent] = TypeAdapter(ReportEvent)


@dataclass
class Ingest:
    """What the routes share; built by ``create_app``, clients started by its lifespan."""

    settings: IngestSettings
    sections: frozenset[str]  # catalogue ids: a set lookup, not a Mapping's __contains__
    topics: Topics
    idempotency: Idempotency
    gate: KafkaGate
    dead_letters: DeadLetterWriter
    limiter: RateLimiter
    make_consumer: Callable[[], AIOKafkaConsumer]
    dead_letter_reads: asyncio.Semaphore
    # The loop the app runs in (the lifespan's): asyncio.get_running_loop() costs a
    # getpid() system call on every call on Python 3.11.
    loop: asyncio.AbstractEventLoop


def _ingest(request: Request) -> Ingest:
    ingest: Ingest = request.app.state.ingest
    return ingest


def admit(scope: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: a principal holding ``scope`` (401/403), within its rate limit (429)."""

    # A default, not an Annotated hint: hints are strings here (PEP 563) and FastAPI
    # resolves them in module globals, where ``scope`` does not exist.
    authenticated = Depends(require(scope))

    async def dependency(request: Request, principal: Principal = authenticated) -> Principal:
        within_rate(_ingest(request).limiter, principal)
        return principal

    return dependency


def within_rate(limiter: RateLimiter, principal: Principal) -> None:
    """Spend one request of the principal's token; HTTPException 429 when it is over."""
    wait = limiter.take(principal.token_id)
    if wait > 0:
        RATE_LIMITED.inc()
        retry = max(1, math.ceil(wait))
        raise HTTPException(
            429,
            detail=f"more than {limiter.rate:g} requests/s with this token; retry after {retry}s",
            headers={"Retry-After": str(retry)},
        )


def admit_now(
    app_state: Any, ingest: Ingest, token: str | None, scope: str, conn: Callable[[], Any]
) -> Principal:
    """What :func:`admit` checks (401/403, then 429), as a plain call on a token already
    read: the pure-ASGI door of ``POST /v1/field-events`` (``services.ingest.fastpath``)
    uses it. ``conn()`` makes the request a refusal is reported with."""
    principal = admit_token(app_state, token, scope, conn)
    within_rate(ingest.limiter, principal)
    return principal


# --- documentation ------------------------------------------------------------------

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
        "required": True,
    }
}


def _responses(
    ok: int, ok_model: type[Any], ok_text: str, body: bool = True
) -> dict[int | str, Any]:
    out: dict[int | str, Any] = {
        ok: {"model": ok_model, "description": ok_text},
        401: {"model": ErrorBody, "description": "No token, or not a valid one."},
        403: {"model": ErrorBody, "description": "The token lacks the route's scope."},
        422: {"model": ErrorBody, "description": "Invalid request; each bad field is named."},
        429: {
            "model": ErrorBody,
            "description": "Too many requests with this token.",
            "headers": _RETRY_AFTER,
        },
        503: {
            "model": ErrorBody,
            "description": "Kafka did not answer in time; nothing was accepted. Retry.",
            "headers": _RETRY_AFTER,
        },
    }
    if body:
        out[413] = {"model": ErrorBody, "description": "Too large a body or too many items."}
        out[415] = {"model": ErrorBody, "description": "Not JSON or NDJSON."}
    return out


def _body(component: str, max_items: int) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{component}"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            ref,
                            {"type": "array", "items": ref, "minItems": 1, "maxItems": max_items},
                        ]
                    }
                },
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "One JSON object per line."}
                },
            },
        }
    }


# --- the door -------------------------------------------------------------------------


async def read_capped(receive: Receive, length: str, limit: int) -> bytes:
    """The body, refused (without reading it) when its Content-Length (``length``, the
    header's value) says it is too large, and refused as soon as the stream passes
    ``limit`` otherwise. Read from ASGI ``receive`` as Starlette's ``Request.stream()``
    reads it (ClientDisconnect when the client leaves first)."""
    if length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif kind == "http.disconnect":
            raise ClientDisconnect


def _error(status: int, detail: str, **extra: Any) -> JSONBytes:
    retry = extra.pop("retry_after", None)
    headers = {"Retry-After": str(retry)} if retry is not None else None
    body: dict[str, Any] = {"detail": detail, **extra}
    if retry is not None:
        body["retry_after"] = retry
    return JSONBytes(body, status_code=status, headers=headers)


def _unavailable(
    exc: BrokerUnavailable,
    detail: str = "Kafka did not acknowledge in time; nothing was accepted, resend the request",
) -> JSONBytes:
    UNAVAILABLE.inc()
    return _error(503, f"{detail} ({exc})", retry_after=2)


@dataclass
class _Intake:
    parsed: Parsed
    received_at: datetime
    deadline: float
    content_type: str


@dataclass(frozen=True, slots=True)
class Posted:
    """What the routes read of a request besides its principal: two headers' values
    (the first of each, as Starlette's ``Headers.get``) and the ASGI ``receive``
    its body comes from."""

    content_type: str
    content_length: str
    receive: Receive

    @classmethod
    def of(cls, request: Request) -> Posted:
        headers = request.headers
        return cls(
            headers.get("content-type", ""), headers.get("content-length", ""), request.receive
        )


async def _intake(
    posted: Posted,
    ingest: Ingest,
    principal: Principal,
    route: str,
    what: str,
    plural: str,
    rejected: Any,
) -> _Intake | Response:
    """Read and parse the body within the limits, or the response that refuses it."""
    settings = ingest.settings
    # The deadline covers the whole request; keep a little for answering.
    deadline = (
        ingest.loop.time() + settings.produce_timeout - min(0.1, settings.produce_timeout / 10)
    )
    received_at = datetime.now(UTC)
    content_type = posted.content_type
    kind = media_kind(content_type)
    if kind is None:
        return _error(
            415,
            f"unsupported Content-Type {content_type[:64]!r}: send application/json "
            f"or {NDJSON_TYPES[0]}",
        )
    try:
        body = await read_capped(posted.receive, posted.content_length, settings.max_body_bytes)
    except BodyTooLarge:
        return _error(
            413,
            f"body larger than the {settings.max_body_bytes}-byte limit (BW_MAX_BODY_BYTES)",
            limit=settings.max_body_bytes,
        )
    try:
        parsed = read_items(body, kind, settings.max_events, what, plural)
    except BodyError as exc:
        rejected.labels("body").inc()
        ingest.dead_letters.offer(
            dead_letter(
                received_at=received_at,
                route=route,
                token_id=principal.token_id,
                index=None,
                item_id=None,
                problems=[("(body)", str(exc))],
                content_type=content_type,
                original=body,
                max_bytes=settings.dead_letter_max_bytes,
            )
        )
        return _error(422, str(exc), errors=[{"field": "(body)", "reason": str(exc)}])
    if len(parsed.items) > settings.max_events:
        return _error(
            413,
            f"more than the {settings.max_events}-{what.split()[-1]} limit in one request "
            "(BW_MAX_EVENTS)",
            limit=settings.max_events,
        )
    series(BATCH_SIZE, route).observe(len(parsed.items))
    return _Intake(parsed, received_at, deadline, content_type)


def _send_dead_letters(
    ingest: Ingest,
    intake: _Intake,
    route: str,
    principal: Principal,
    problems: Sequence[Problem],
) -> None:
    by_index: dict[int, list[Problem]] = {}
    for p in problems:
        by_index.setdefault(p.index, []).append(p)
    for index, item_problems in by_index.items():
        ingest.dead_letters.offer(
            dead_letter(
                received_at=intake.received_at,
                route=route,
                token_id=principal.token_id,
                index=index,
                item_id=item_problems[0].event_id,
                problems=[(p.field, p.reason) for p in item_problems],
                content_type=intake.content_type,
                original=intake.parsed.raw(index),
                max_bytes=ingest.settings.dead_letter_max_bytes,
            )
        )


async def _produce(
    ingest: Ingest,
    keys: Sequence[str],
    records_for: Callable[[list[int]], list[Outgoing]],
    deadline: float,
) -> tuple[list[int], list[int]]:
    """Produce what is new among ``keys``; (new, duplicate) positions once all is acked.

    Raises BrokerUnavailable when Kafka did not acknowledge before the deadline,
    neither this request's records nor those of an earlier request carrying some
    of the same ids."""
    claim = ingest.idempotency.claim(keys)
    try:
        records = records_for(claim.new)
    except BaseException:
        ingest.idempotency.settle([keys[p] for p in claim.new], False)
        raise
    await ingest.gate.publish(records, deadline)
    if claim.waiting:
        timeout = deadline - ingest.loop.time()
        others = [(keys[p], flight) for p, flight in claim.waiting]
        if not await ingest.idempotency.wait(others, timeout):
            raise BrokerUnavailable("an earlier request with the same ids was not acknowledged")
    duplicate = sorted(claim.duplicate + [p for p, _ in claim.waiting])
    return claim.new, duplicate


def _refuse(
    ingest: Ingest,
    intake: _Intake,
    route: str,
    principal: Principal,
    problems: list[Problem],
    counter: Counter,
) -> list[dict[str, Any]]:
    """Count and dead-letter the refused items; their entries for the response."""
    if problems:
        count_rejections(counter, problems)
        _send_dead_letters(ingest, intake, route, principal, problems)
    return [p.as_dict() for p in problems]


async def _accept(
    ingest: Ingest,
    intake: _Intake,
    keys: Sequence[str],
    records_for: Callable[[list[int]], list[Outgoing]],
    ids: Sequence[str],
    labels: Sequence[str],
    counters: tuple[Counter, Counter],
    rejected: list[dict[str, Any]],
) -> Response:
    """Produce the valid items and answer 202 with each one's outcome (503 if Kafka
    does not acknowledge in time); ``labels`` label the accepted/duplicate counters."""
    try:
        new, duplicate = await _produce(ingest, keys, records_for, intake.deadline)
    except BrokerUnavailable as exc:
        return _unavailable(exc)
    accepted_total, duplicate_total = counters
    for counter, positions in ((accepted_total, new), (duplicate_total, duplicate)):
        if len(positions) == 1:  # a single event: no tally to build
            series(counter, labels[positions[0]]).inc()
        elif positions:
            for label, n in Tally(labels[p] for p in positions).items():
                series(counter, label).inc(n)
    return JSONBytes(
        {
            "accepted": [ids[p] for p in new],
            "duplicate": [ids[p] for p in duplicate],
            "rejected": rejected,
        },
        status_code=202,
    )


# --- routes ---------------------------------------------------------------------------


@router.post(
    FIELD_EVENTS,
    status_code=202,
    tags=["ingest"],
    summary="Post one field event, a JSON array or NDJSON",
    response_model=None,
    openapi_extra=_body("FieldEvent", 10_000),
    responses=_responses(
        202,
        FieldEventsResult,
        "The broker acknowledged every accepted and duplicate event; rejected ones "
        "are explained (resend those, fixed).",
    ),
)
async def post_field_events(
    request: Request, principal: Annotated[Principal, Depends(admit(FIELD_SCOPE))]
) -> Response:
    return await field_events(_ingest(request), principal, Posted.of(request))


async def field_events(ingest: Ingest, principal: Principal, posted: Posted) -> Response:
    """``POST /v1/field-events`` once the principal is admitted: the one implementation,
    called by the FastAPI route above and by the pure-ASGI door in front of it."""
    settings = ingest.settings
    intake = await _intake(
        posted, ingest, principal, FIELD_EVENTS, "field event", "events", REJECTED
    )
    if isinstance(intake, Response):
        return intake
    # Parsing and validating a big batch holds the event loop for milliseconds: let
    # it deliver other requests' acks in between (shorter waits, fuller pipeline).
    # A small one takes microseconds, less than the loop turn a yield costs.
    big = len(intake.parsed.items) >= YIELD_FROM_ITEMS
    if big:
        await asyncio.sleep(0)
    checked = check_events(
        intake.parsed.items,
        ingest.sections,
        intake.received_at.timestamp(),
        settings.future_tolerance_seconds,
        settings.max_age_seconds,
        raw=intake.parsed.array(),
        countries=principal.countries,
    )
    rejected = _refuse(ingest, intake, FIELD_EVENTS, principal, checked.problems, REJECTED)
    if not checked.valid:
        return _error(422, "no valid event in the request", errors=rejected)
    if big:
        await asyncio.sleep(0)
    events = [e for _, e in checked.valid]
    # orjson writes UUIDs in canonical form ~8x faster than str(uuid) in a loop.
    keys: list[str] = orjson.loads(orjson.dumps([e.event_id for e in events]))
    topic = ingest.topics.field_events
    received_at = intake.received_at.timestamp()

    def records_for(new: list[int]) -> list[Outgoing]:
        records = section_records(
            [events[p] for p in new], settings.record_max_events, settings.record_max_bytes
        )
        return [
            Outgoing(
                topic,
                r.section_id.encode(),
                r.value,
                r.timestamp_ms,
                tuple([keys[new[i]] for i in r.positions]),
                received_at,
            )
            for r in records
        ]

    kinds = [e.kind.value for e in events]
    return await _accept(
        ingest, intake, keys, records_for, keys, kinds, (ACCEPTED, DUPLICATE), rejected
    )


@router.post(
    REPORTS,
    status_code=202,
    tags=["ingest"],
    summary="Post one report event, a JSON array or NDJSON",
    response_model=None,
    openapi_extra=_body("ReportEvent", 10_000),
    responses=_responses(
        202,
        ReportsResult,
        "The broker acknowledged every accepted and duplicate report; rejected ones are explained.",
    ),
)
async def post_reports(
    request: Request, principal: Annotated[Principal, Depends(admit("ingest:report"))]
) -> Response:
    ingest = _ingest(request)
    settings = ingest.settings
    intake = await _intake(
        Posted.of(request), ingest, principal, REPORTS, "report event", "reports", REPORTS_REJECTED
    )
    if isinstance(intake, Response):
        return intake
    checked = check_reports(
        intake.parsed.items,
        ingest.sections,
        intake.received_at.timestamp(),
        settings.future_tolerance_seconds,
        principal.countries,
    )
    rejected = _refuse(ingest, intake, REPORTS, principal, checked.problems, REPORTS_REJECTED)
    if not checked.valid:
        return _error(422, "no valid report in the request", errors=rejected)
    reports = [r for _, r in checked.valid]
    keys = ["report:" + r.report_id for r in reports]
    topic = ingest.topics.report_events
    # Stamped with the arrival time, not published_at: an archived report must not
    # fall out of the topic's retention the moment it is written.
    arrival_ms = int(intake.received_at.timestamp() * 1000)

    def records_for(new: list[int]) -> list[Outgoing]:
        return [
            Outgoing(
                topic,
                reports[p].country.encode(),
                _REPORT.dump_json(reports[p], exclude_none=True),
                arrival_ms,
                (keys[p],),
                intake.received_at.timestamp(),
            )
            for p in new
        ]

    ids = [r.report_id for r in reports]
    sources = [r.source.type.value for r in reports]
    return await _accept(
        ingest,
        intake,
        keys,
        records_for,
        ids,
        sources,
        (REPORTS_ACCEPTED, REPORTS_DUPLICATE),
        rejected,
    )


@router.get(
    DEAD_LETTER,
    tags=["admin"],
    summary="The most recent dead letters (refused items), newest first",
    response_model=None,
    responses=_responses(200, DeadLetters, "Newest first.", body=False),
)
async def get_dead_letters(
    request: Request,
    principal: Annotated[Principal, Depends(admit("admin"))],
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> Response:
    unknown = sorted(set(request.query_params) - {"limit"})
    if unknown:  # a typo (``limt=5``) should not silently read 100
        return _error(
            422,
            "invalid request",
            errors=[
                {"field": f"query.{name}"[:100], "reason": "unknown parameter"} for name in unknown
            ],
        )
    ingest = _ingest(request)
    timeout = ingest.settings.produce_timeout
    try:
        async with asyncio.timeout(timeout):
            async with ingest.dead_letter_reads:
                items = await read_recent(
                    ingest.make_consumer, ingest.topics.dead_letter, limit, timeout
                )
    except TimeoutError:
        timed_out = BrokerUnavailable("reading the dead-letter topic timed out")
        return _unavailable(timed_out, "Kafka did not answer in time")
    except BrokerUnavailable as exc:
        return _unavailable(exc, "Kafka did not answer in time")
    # Dead letters hold what field units sent: who read them goes in the audit trail.
    request.app.state.audit.record(
        AuditAction.dead_letter_read,
        actor_of(principal),
        target=DEAD_LETTER,
        client=request.client.host if request.client else None,
        detail={"limit": limit, "returned": len(items)},
    )
    return JSONBytes({"items": items})
