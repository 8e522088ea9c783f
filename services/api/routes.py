"""REST and WebSocket routes of the API."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)

from schemas.models import Severity
from services.api.feeds import CLOSE_TOO_SLOW, Hub, Subscriber
from services.api.view import View
from services.common.auth import Principal, require

router = APIRouter(prefix="")

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
HEARTBEAT_SECONDS = 20.0

ReadScope = Annotated[Principal, Depends(require("read"))]


def _view(request: Request) -> View:
    view: View = request.app.state.view
    return view


@router.get(
    "/api/v1/state",
    tags=["state"],
    summary="The whole picture: sections, per-country roll-ups, firing alerts",
)
async def whole_picture(request: Request, _: ReadScope) -> dict[str, Any]:
    return _view(request).picture()


@router.get("/api/v1/countries", tags=["state"], summary="Per-country roll-ups of the sections")
async def list_countries(request: Request, _: ReadScope) -> list[dict[str, Any]]:
    return _view(request).countries()


@router.get("/api/v1/sections", tags=["state"], summary="Every section with its level and counts")
async def list_sections(request: Request, _: ReadScope) -> list[dict[str, Any]]:
    return _view(request).sections()


@router.get(
    "/api/v1/sections/{section_id}",
    tags=["state"],
    summary="One section with its polyline and the last 24 hourly buckets",
    responses={404: {"description": "No such section in the catalogue"}},
)
async def get_section(section_id: str, request: Request, _: ReadScope) -> dict[str, Any]:
    section = _view(request).section(section_id, detail=True)
    if section is None:
        raise HTTPException(404, detail=f"unknown section {section_id!r}")
    return section


@router.get(
    "/api/v1/alerts", tags=["alerts"], summary="Alerts, latest transition each, newest first"
)
async def list_alerts(
    request: Request,
    _: ReadScope,
    status: Literal["firing", "resolved"] | None = None,
    section: Annotated[str | None, Query(description="Section id or glob, e.g. LV-*")] = None,
    severity: Annotated[Severity | None, Query(description="Minimum severity")] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
    since: Annotated[datetime | None, Query(description="Updated at or after")] = None,
    before: Annotated[datetime | None, Query(description="Updated before (next page)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return _view(request).alert_list(
        status=status,
        section=section,
        limit=limit,
        severity=severity.value if severity else None,
        country=country,
        since=_aware(since),
        before=_aware(before),
    )


def _aware(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


@router.get(
    "/api/v1/alerts/{alert_id}",
    tags=["alerts"],
    summary="All transitions of one alert",
    responses={404: {"description": "Unknown alert"}},
)
async def get_alert(alert_id: str, request: Request, _: ReadScope) -> dict[str, Any]:
    history = _view(request).alert(alert_id)
    if history is None:
        raise HTTPException(404, detail=f"unknown alert {alert_id!r}")
    return {"alert_id": alert_id, "current": history[-1], "transitions": history}


def _ws_token(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for proto in ws.headers.get("sec-websocket-protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith("bw_"):
            return proto
    return ws.query_params.get("token")


@router.websocket("/ws/feed")
async def feed(ws: WebSocket) -> None:
    """Section-state changes and alert transitions as JSON messages.

    The first message is a ``snapshot`` of every section and the firing alerts;
    then each change is one message ``{"type", "payload", "cursor"}``. Token:
    ``Authorization: Bearer``, a ``bw_…`` subprotocol, or ``?token=``.
    """
    app = ws.app
    subprotocol = None
    if app.state.auth_enabled:
        token = _ws_token(ws)
        principal = app.state.tokens.verify(token) if token else None
        if principal is None:
            await ws.close(code=CLOSE_UNAUTHORIZED, reason="missing or invalid token")
            return
        if "read" not in principal.scopes:
            await ws.close(code=CLOSE_FORBIDDEN, reason="token lacks the 'read' scope")
            return
        if token and token in ws.headers.get("sec-websocket-protocol", ""):
            subprotocol = token
    hub: Hub = app.state.hub
    view: View = app.state.view
    await ws.accept(subprotocol=subprotocol)
    sub = hub.subscribe()
    try:
        snapshot = {
            "type": "snapshot",
            "payload": {"sections": view.sections(), "alerts": view.alert_list(status="firing")},
            "cursor": None,
        }
        await ws.send_text(orjson.dumps(snapshot).decode())
        reader = asyncio.create_task(_drain_client(ws, sub))
        try:
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), timeout=HEARTBEAT_SECONDS)
                except TimeoutError:
                    await ws.send_text('{"type":"heartbeat","payload":{},"cursor":null}')
                    continue
                if message is None:
                    if sub.too_slow:
                        await ws.close(code=CLOSE_TOO_SLOW, reason="too slow; reconnect to resync")
                    else:
                        await ws.close(code=1001, reason="server shutting down")
                    return
                if reader.done():
                    return
                await ws.send_text(message.decode())
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.unsubscribe(sub)


async def _drain_client(ws: WebSocket, sub: Subscriber) -> None:
    """Read (and ignore) what the client sends; on disconnect wake the writer."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()
    with contextlib.suppress(asyncio.QueueFull):
        sub.queue.put_nowait(None)
