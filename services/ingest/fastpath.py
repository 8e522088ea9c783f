"""A pure-ASGI door for ``POST /v1/field-events``, in front of the FastAPI stack.

Sensors post one event per request, so what a request costs besides its event
matters: through Starlette and FastAPI a single-event request went through
eight ASGI layers, route matching and dependency solving, about a fifth of
ingest's CPU per request (py-spy, ``python -m bench.ingest --batch 1``).

This door does what that stack does for this one route, with the same code:
Starlette's :class:`ServerErrorMiddleware` (500 on a bug), our
:class:`SecurityHeaders` and :class:`RequestTimer`, :func:`admit_now` (the
checks of the route's ``admit`` dependency: 401/403, then 429), FastAPI's own
handler for the resulting ``HTTPException``, and :func:`field_events`, the
route's body. The FastAPI route stays: it documents the route in
``/openapi.json`` and answers every request this door declines (another method,
a ``root_path``). ``tests/integration/test_ingest_fastpath.py`` compares both
answers for every refusal.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

from services.common.security import SecurityHeaders
from services.ingest.metrics import RequestTimer
from services.ingest.routes import FIELD_EVENTS, FIELD_SCOPE, ROUTES, admit_now, field_events


class FieldEventsDoor:
    """The endpoint: admit, then the route's body; refusals rendered as FastAPI would."""

    def __init__(self, on_http_error: ExceptionHandler) -> None:
        self.on_http_error = on_http_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            principal = admit_now(request, FIELD_SCOPE)
        except HTTPException as exc:
            response = await self._refusal(request, exc)
        else:
            response = await field_events(request, principal)
        await response(scope, receive, send)

    async def _refusal(self, request: Request, exc: HTTPException) -> Response:
        # As Starlette's ExceptionMiddleware calls a handler.
        handler: Any = self.on_http_error
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        return cast(Response, response)


def field_events_door(app: FastAPI, max_query_bytes: int) -> ASGIApp:
    """The door's ASGI app: the same layers, in the same order, as ``app``'s stack."""
    handler = app.exception_handlers.get(HTTPException, http_exception_handler)
    server_error = app.exception_handlers.get(500) or app.exception_handlers.get(Exception)
    secured = SecurityHeaders(
        RequestTimer(FieldEventsDoor(handler), routes=ROUTES), max_query_bytes=max_query_bytes
    )
    return ServerErrorMiddleware(
        cast(ASGIApp, secured),
        handler=server_error,
        debug=app.debug,
    )


class IngestApp(FastAPI):
    """FastAPI, with ``POST /v1/field-events`` answered by :attr:`door` when set."""

    door: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        door = self.door
        if (
            door is not None
            and scope["type"] == "http"
            and scope["path"] == FIELD_EVENTS
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
        ):
            scope["app"] = self  # as Starlette does: Request.app reads it
            await door(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
