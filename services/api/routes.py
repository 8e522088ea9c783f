"""REST and WebSocket routes of the API."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from aiokafka.errors import KafkaError
from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from schemas.models import KINDS, SEVERITY_ORDER, AckRequest, AlertAck, Kind, Severity
from services.api import examples, scope
from services.api.examples import example
from services.api.feeds import (
    CLOSE_TOO_SLOW,
    FEED_FRAMES,
    CursorError,
    Filter,
    Hub,
    Subscriber,
    batch_frame,
    decode_cursor,
    dumps,
    encode_cursor,
    frames,
)
from services.api.guard import FeedGuard
from services.api.history import HistoryError, parse_at
from services.api.view import HISTORY_HOURS, View
from services.common.auth import Principal, Refusal, authenticate, require

router = APIRouter(prefix="")

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400
CLOSE_TOO_MANY = 4429

ReadScope = Annotated[Principal, Depends(require("read"))]


def _refusal_text(refusal: Refusal) -> str:
    if refusal.reason in ("revoked", "expired"):
        return f"token {refusal.reason}"
    return "missing or invalid token"


def _too_many(guard: FeedGuard) -> str:
    return f"this token already has {guard.max_per_token} feed connections open"


def _view(request: Request) -> View:
    view: View = request.app.state.view
    return view


@router.get(
    "/api/v1/state",
    tags=["state"],
    summary="The whole picture: sections, per-country roll-ups, firing alerts; now or at "
    "any moment of the last 7 days",
    description="Without `at`: the live picture. With `at`: the picture as it was then, "
    "rebuilt from Kafka (the hourly counts of `bw.section-hours` and the alert "
    "transitions of `bw.alerts`), in the same shape plus `at`. History is hourly: "
    "every hour that started before `at` counts whole; each section's `level` is what "
    "the alert rules' ladders give its counts then; `firing_alerts` are the alerts "
    "whose latest transition at or before `at` was firing.",
    responses={
        200: {
            "description": "The picture",
            "content": {
                "application/json": {
                    "examples": {
                        "live": {
                            "summary": "Now (no at)",
                            "value": {
                                "sections": [examples.SECTION],
                                "countries": [examples.COUNTRY],
                                "firing_alerts": [examples.ALERT],
                            },
                        },
                        "history": {
                            "summary": "At a past hour (?at=2026-11-30T02:00:00Z)",
                            "value": examples.PICTURE_AT,
                        },
                    }
                }
            },
        },
        422: {
            "description": "at is malformed (not RFC 3339 with an offset), in the future, "
            "or older than 7 days",
            "content": {"application/json": {"example": examples.AT_ERROR}},
        },
    },
)
async def whole_picture(
    request: Request,
    principal: ReadScope,
    at: Annotated[
        str | None,
        Query(
            description="An RFC 3339 date-time with an offset (e.g. 2026-11-30T22:00:00Z) "
            "within the last 7 days: the picture as it was then.",
            max_length=64,
        ),
    ] = None,
) -> dict[str, Any]:
    if at is None:
        return scope.picture(principal, _view(request).picture())
    try:
        moment = parse_at(at, time.time())
    except HistoryError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "at"), "msg": str(exc), "type": "value_error"}]
        ) from None
    return scope.picture(principal, _view(request).picture_at(moment))


@router.get(
    "/api/v1/countries",
    tags=["state"],
    summary="Per-country roll-ups of the sections",
    responses=example([examples.COUNTRY]),
)
async def list_countries(request: Request, principal: ReadScope) -> list[dict[str, Any]]:
    return scope.only(principal, _view(request).countries())


@router.get(
    "/api/v1/sections",
    tags=["state"],
    summary="Every section with its level and counts",
    responses=example([examples.SECTION]),
)
async def list_sections(request: Request, principal: ReadScope) -> list[dict[str, Any]]:
    return scope.only(principal, _view(request).sections())


@router.get(
    "/api/v1/sections/{section_id}",
    tags=["state"],
    summary="One section with its polyline and its last hourly buckets (24 h, up to 7 d)",
    responses={
        **example(examples.SECTION_DETAIL),
        404: {"description": "No such section in the catalogue"},
        422: {"description": "hours is not a whole number from 1 to 168"},
    },
)
async def get_section(
    section_id: str,
    request: Request,
    principal: ReadScope,
    hours: Annotated[
        int,
        Query(
            ge=1,
            le=HISTORY_HOURS,
            description="How many hourly buckets, up to the newest (1-168). Beyond the "
            "24 a state carries, the API serves the buckets it has seen in earlier "
            "states; hours it has not seen are left out (see history_since).",
        ),
    ] = 24,
) -> dict[str, Any]:
    section = _view(request).section(section_id, detail=True, hours=hours)
    if section is None or not scope.sees(principal, section["country"]):
        raise HTTPException(404, detail=f"unknown section {section_id!r}")
    return section


@router.get(
    "/api/v1/alerts",
    tags=["alerts"],
    summary="Alerts, latest transition each, newest first",
    responses=example([examples.ALERT]),
)
async def list_alerts(
    request: Request,
    principal: ReadScope,
    status: Literal["firing", "resolved"] | None = None,
    section: Annotated[str | None, Query(description="Section id or glob, e.g. LV-*")] = None,
    severity: Annotated[Severity | None, Query(description="Minimum severity")] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
    since: Annotated[datetime | None, Query(description="Updated at or after")] = None,
    before: Annotated[datetime | None, Query(description="Updated before (next page)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    view = _view(request)
    return scope.only(
        principal,
        view.alert_list(
            status=status,
            section=section,
            # A scoped token's page is cut after filtering, so it is never short.
            limit=view.max_alerts if principal.countries else limit,
            severity=severity.value if severity else None,
            country=country,
            since=_aware(since),
            before=_aware(before),
        ),
    )[:limit]


def _aware(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


@router.get(
    "/api/v1/alerts/{alert_id}",
    tags=["alerts"],
    summary="One alert: its current state, every transition and every acknowledgement",
    responses={
        **example(
            {
                "alert_id": examples.ALERT["alert_id"],
                "current": examples.ALERT,
                "transitions": [{**examples.ALERT, "seq": 1, "severity": "medium"}, examples.ALERT],
                "acks": [examples.ACK],
            }
        ),
        404: {"description": "Unknown alert"},
    },
)
async def get_alert(alert_id: str, request: Request, principal: ReadScope) -> dict[str, Any]:
    detail = _view(request).alert_detail(alert_id)
    if detail is None or not scope.sees(principal, detail["current"]["country"]):
        raise HTTPException(404, detail=f"unknown alert {alert_id!r}")
    return detail


@router.post(
    "/api/v1/alerts/{alert_id}/ack",
    tags=["alerts"],
    status_code=202,
    summary="Acknowledge a firing alert (scope `ack`)",
    responses={
        202: {
            "description": "The acknowledgement is in Kafka; every replica shows it within 1 s",
            "content": {"application/json": {"example": examples.ACK}},
        },
        404: {"description": "Unknown alert"},
        409: {"description": "The alert is already resolved"},
        503: {"description": "Kafka did not acknowledge in time; retry"},
    },
)
async def ack_alert(
    alert_id: str,
    body: AckRequest,
    request: Request,
    principal: Annotated[Principal, Depends(require("ack"))],
) -> dict[str, Any]:
    history = _view(request).alert(alert_id)
    if not history or not scope.sees(principal, history[-1]["country"]):
        raise HTTPException(404, detail=f"unknown alert {alert_id!r}")
    current = history[-1]
    if current["status"] == "resolved":
        raise HTTPException(
            409,
            detail=f"alert {alert_id!r} was resolved at {current['resolved_at']}; nothing to ack",
        )
    ack = AlertAck(
        ack_id=uuid.uuid4(),
        alert_id=alert_id,
        seq=current["seq"],
        # Who acknowledged is the token; the typed name is only shown beside it.
        by=body.by or principal.label or principal.token_id,
        comment=body.comment,
        acked_at=datetime.now(UTC),
        token_id=principal.token_id,
        token_label=principal.label,
    ).model_dump(mode="json")
    settings = request.app.state.settings
    try:
        await asyncio.wait_for(
            request.app.state.producer.send_and_wait(
                request.app.state.topics.alert_acks,
                orjson.dumps(ack),
                key=alert_id.encode(),
            ),
            timeout=settings.produce_timeout,
        )
    except (TimeoutError, KafkaError) as exc:
        raise HTTPException(
            503, detail=f"Kafka did not acknowledge: {exc!r}", headers={"Retry-After": "2"}
        ) from exc
    return ack


@router.get("/api/v1/events/recent", tags=["state"], summary="The newest field events")
async def recent_events(
    request: Request,
    principal: ReadScope,
    section: Annotated[str | None, Query(description="Section id or glob")] = None,
    kind: Kind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    view = _view(request)
    if not principal.countries:
        return view.recent_events(section, kind.value if kind else None, limit)
    every = view.recent_events(section, kind.value if kind else None, len(view.events) or 1)
    return scope.only_events(principal, every, limit)


@router.get("/api/v1/reports/recent", tags=["state"], summary="The newest report events")
async def recent_reports(
    request: Request,
    principal: ReadScope,
    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    view = _view(request)
    if not principal.countries:
        return view.recent_reports(country, limit)
    return scope.only(principal, view.recent_reports(country, len(view.reports) or 1))[:limit]


@router.get(
    "/api/v1/reports/{report_id}",
    tags=["state"],
    summary="One recent report with its analysis (figures and signals)",
    responses={
        **example(examples.REPORT),
        404: {"description": "No such report among the recent ones"},
    },
)
async def get_report(
    request: Request,
    principal: ReadScope,
    report_id: Annotated[str, Path(min_length=1, max_length=128)],
) -> dict[str, Any]:
    report = _view(request).report(report_id)
    if report is None or not scope.sees(principal, report.get("country")):
        raise HTTPException(404, detail=f"report_id {report_id!r}: not among the recent reports")
    return report


@router.get(
    "/api/v1/assessment",
    tags=["state"],
    summary="The closure-criteria assessment of every country (decision support)",
    responses=example([examples.ASSESSMENT]),
)
async def assessments(request: Request, principal: ReadScope) -> list[dict[str, Any]]:
    return scope.only(principal, _view(request).assessment_list())


@router.get(
    "/api/v1/assessment/{country}",
    tags=["state"],
    summary="One country's closure-criteria assessment: factor levels with evidence, and stage",
    responses={
        **example(examples.ASSESSMENT),
        404: {"description": "No assessment of this country yet"},
    },
)
async def country_assessment(
    request: Request,
    principal: ReadScope,
    country: Annotated[str, Path(pattern=r"^[A-Z]{2}$")],
) -> dict[str, Any]:
    found = _view(request).assessments.get(country)
    if found is None or not scope.sees(principal, country):
        raise HTTPException(404, detail=f"country {country!r}: no assessment yet")
    return found


# --- feeds ---------------------------------------------------------------------------


def _token(headers: Any, query: Any) -> tuple[str | None, bool]:
    """The bearer token of a feed request and whether it came as a subprotocol."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    for proto in headers.get("sec-websocket-protocol", "").split(","):
        if proto.strip().startswith("bw_"):
            return proto.strip(), True
    return query.get("token"), False


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _feed_filter(query: Any, types: frozenset[str], principal: Principal) -> Filter:
    severity = query.get("min_severity")
    if severity is not None and severity not in SEVERITY_ORDER:
        raise CursorError(f"min_severity must be one of {', '.join(SEVERITY_ORDER)}")
    kinds = _csv(query.get("kinds"))
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise CursorError(f"unknown kinds {bad}; known: {', '.join(KINDS)}")
    hourly = query.get("hourly", "false").lower()
    if hourly not in ("true", "false", "1", "0"):
        raise CursorError("hourly must be true or false")
    return Filter(
        sections=_csv(query.get("sections")),
        countries=_csv(query.get("country")),
        kinds=kinds,
        min_severity=severity,
        types=types,
        hourly=hourly in ("true", "1"),
        scope=scope.allowed(principal),
    )


def _snapshot(view: View, hub: Hub, type_: str, filter_: Filter) -> bytes:
    sections = [
        s
        for s in view.sections()
        if (
            not filter_.sections
            or any(fnmatch.fnmatchcase(s["section_id"], p) for p in filter_.sections)
        )
        and (not filter_.countries or s["country"] in filter_.countries)
        and (not filter_.scope or s["country"] in filter_.scope)
    ]
    alerts = [
        a
        for a in view.alert_list(status="firing", limit=view.max_alerts)
        if (
            not filter_.sections
            or any(fnmatch.fnmatchcase(a["section_id"], p) for p in filter_.sections)
        )
        and (not filter_.countries or a["country"] in filter_.countries)
        and (not filter_.scope or a["country"] in filter_.scope)
        and (
            not filter_.min_severity
            or SEVERITY_ORDER[a["severity"]] >= SEVERITY_ORDER[filter_.min_severity]
        )
    ]
    payload: dict[str, Any] = {"alerts": alerts}
    if "section_state" in filter_.types:
        payload["sections"] = sections
    return dumps({"type": type_, "payload": payload, "cursor": encode_cursor(hub.position)})


FEED_TYPES = frozenset({"section_state", "alert", "ack", "analysis", "assessment"})
ALERT_TYPES = frozenset({"alert", "ack"})


async def _refuse(ws: WebSocket, subprotocol: str | None, code: int, reason: str) -> None:
    """Close with a feed close code the client can read: a close before the handshake
    would reach it as a bare HTTP 403."""
    await ws.accept(subprotocol=subprotocol)
    await ws.close(code=code, reason=reason[:120])


async def _serve_ws(ws: WebSocket, types: frozenset[str]) -> None:
    app = ws.app
    token, as_protocol = _token(ws.headers, ws.query_params)
    # Echo a token subprotocol even with auth off, or browsers drop the socket.
    subprotocol = token if as_protocol else None
    principal = authenticate(app.state, token, ws)
    if isinstance(principal, Refusal):
        await _refuse(ws, subprotocol, CLOSE_UNAUTHORIZED, _refusal_text(principal))
        return
    if "read" not in principal.scopes:
        await _refuse(ws, subprotocol, CLOSE_FORBIDDEN, "token lacks the 'read' scope")
        return
    guard: FeedGuard = app.state.feed_guard
    if not guard.admit(principal):
        await _refuse(ws, subprotocol, CLOSE_TOO_MANY, _too_many(guard))
        return
    try:
        filter_ = _feed_filter(ws.query_params, types, principal)
        cursor_text = ws.query_params.get("cursor")
        cursor = decode_cursor(cursor_text) if cursor_text else None
    except CursorError as exc:
        await _refuse(ws, subprotocol, CLOSE_BAD_REQUEST, str(exc))
        return
    hub: Hub = app.state.hub
    view: View = app.state.view
    await ws.accept(subprotocol=subprotocol)
    sub, backlog = hub.subscribe(filter_, cursor)
    guard.opened(sub, principal)
    try:
        if backlog is None:
            first = frames([_snapshot(view, hub, "resync", filter_)])
        elif cursor is None:
            first = frames([_snapshot(view, hub, "snapshot", filter_)])
        else:
            first = frames((filter_.data(e) for e in backlog), hub.max_frame_bytes)
        reader = asyncio.create_task(_drain_client(ws, sub))
        try:
            for frame in first:
                await _send(ws, sub, frame)
            await _pump(ws, hub, sub)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        guard.closed(sub)
        hub.unsubscribe(sub)


async def _pump(ws: WebSocket, hub: Hub, sub: Subscriber) -> None:
    """Send ``sub`` what the hub has for it, one frame per wake-up, until it is
    dropped or closed."""
    while True:
        if sub.too_slow:
            await ws.close(code=CLOSE_TOO_SLOW, reason="too slow; reconnect with your cursor")
            return
        if sub.closed:
            if ws.app.state.feed_guard.token_refused(sub):
                await ws.close(code=CLOSE_UNAUTHORIZED, reason="token revoked, expired or rotated")
            else:
                await ws.close(code=1001, reason="going away")
            return
        frame = hub.next_frame(sub)
        if frame is not None:
            await _send(ws, sub, frame)
            continue
        if sub.heartbeat_due and hub.caught_up(sub):
            await _send(ws, sub, batch_frame([_heartbeat(hub)]))
        sub.heartbeat_due = False
        await sub.wait()


async def _send(ws: WebSocket, sub: Subscriber, frame: str) -> None:
    sub.sending = True
    sub.send_started = asyncio.get_running_loop().time()
    try:
        await ws.send_text(frame)
    finally:
        sub.sending = False
    sub.last_sent = asyncio.get_running_loop().time()
    FEED_FRAMES.inc()


def _heartbeat(hub: Hub) -> bytes:
    return dumps({"type": "heartbeat", "payload": {}, "cursor": encode_cursor(hub.position)})


@router.websocket("/ws/feed")
async def feed(ws: WebSocket) -> None:
    """Section-state changes, alert transitions and acks as JSON messages.

    Every frame is ``{"type": "batch", "messages": [...]}``: the messages the
    client had not had yet when its writer woke, in order. First message:
    ``snapshot`` (or, with ``?cursor=``, exactly the messages missed since
    then, or one ``resync`` snapshot if that is beyond the replay horizon).
    Then ``{"type", "payload", "cursor"}`` per change; ``heartbeat`` when idle. Filters: ``sections`` (ids or globs, comma separated),
    ``country``, ``kinds`` (section updates where these kinds' counts moved),
    ``min_severity``. Token: ``Authorization: Bearer``, a ``bw_…`` subprotocol,
    or ``?token=``. Close codes: 4401 no/bad token, 4403 no ``read`` scope,
    4400 bad query, 4008 too slow (reconnect with your cursor).
    """
    await _serve_ws(ws, FEED_TYPES)


@router.websocket("/ws/alerts")
async def alerts_feed(ws: WebSocket) -> None:
    """Alert transitions and acks only; same protocol as ``/ws/feed``."""
    await _serve_ws(ws, ALERT_TYPES)


@router.get(
    "/sse/alerts",
    tags=["feeds"],
    summary="Alert transitions and acks as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def sse_alerts(
    request: Request,
    sections: str | None = None,
    country: str | None = None,
    min_severity: Severity | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Each event's ``id`` is its cursor: a reconnecting client (``Last-Event-ID``,
    sent by browsers automatically) gets exactly what it missed, or a ``resync``
    event beyond the replay horizon. Token: ``Authorization: Bearer`` or ``?token=``
    (EventSource cannot set headers). Comments (``: ping``) keep proxies open."""
    app = request.app
    token, _ = _token(request.headers, request.query_params)
    principal = authenticate(app.state, token, request)
    if isinstance(principal, Refusal):
        raise HTTPException(
            401,
            detail=f"{_refusal_text(principal)} (bearer token)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if "read" not in principal.scopes:
        raise HTTPException(403, detail="this token lacks the 'read' scope")
    guard: FeedGuard = app.state.feed_guard
    if not guard.admit(principal):
        raise HTTPException(429, detail=_too_many(guard), headers={"Retry-After": "5"})
    try:
        filter_ = _feed_filter(request.query_params, ALERT_TYPES, principal)
        cursor = decode_cursor(last_event_id) if last_event_id else None
    except CursorError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    hub: Hub = app.state.hub
    view: View = app.state.view
    sub, backlog = hub.subscribe(filter_, cursor)
    guard.opened(sub, principal)
    if backlog is None:
        first = _sse_snapshot(_snapshot(view, hub, "resync", filter_))
    elif cursor is None:
        first = _sse_snapshot(_snapshot(view, hub, "snapshot", filter_))
    else:
        first = b"".join(_sse_event(e.type, e.cursor, filter_.data(e)) for e in backlog)

    async def stream() -> AsyncIterator[bytes]:
        # Everything pending goes in one write, as on the WebSocket; each event keeps
        # its own id, so Last-Event-ID stays exact.
        try:
            yield b"retry: 2000\n\n" + first
            while True:
                if sub.too_slow:
                    yield b"event: too_slow\ndata: {}\n\n"
                    return
                if sub.closed:
                    return
                entries = hub.next_entries(sub)
                if entries:
                    yield b"".join(_sse_event(e.type, e.cursor, filter_.data(e)) for e in entries)
                    sub.last_sent = asyncio.get_running_loop().time()
                    continue
                if sub.heartbeat_due:
                    yield b": ping\n\n"
                    sub.last_sent = asyncio.get_running_loop().time()
                sub.heartbeat_due = False
                await sub.wait()
        finally:
            guard.closed(sub)
            hub.unsubscribe(sub)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse_event(type_: str, cursor: str, data: bytes) -> bytes:
    return f"id: {cursor}\nevent: {type_}\n".encode() + b"data: " + data + b"\n\n"


def _sse_snapshot(message: bytes) -> bytes:
    decoded = orjson.loads(message)
    return _sse_event(decoded["type"], decoded["cursor"], message)


async def _drain_client(ws: WebSocket, sub: Subscriber) -> None:
    """Read (and ignore) what the client sends; on disconnect wake the writer."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()
    sub.close()
