"""A pure-ASGI door for ``POST /v1/field-events``, in front of the FastAPI stack.

Sensors post one event per request, so what a request costs besides its event
matters: through Starlette and FastAPI a single-event request went through
eight ASGI layers, route matching and dependency solving, about a fifth of
ingest's CPU per request (py-spy, ``python -m bench.ingest --batch 1``).

This door is one ASGI layer that does what that stack does for this one route,
in the same order and with the same code: Starlette's
:class:`ServerErrorMiddleware` (500 on a bug), our :class:`SecurityHeaders`
(414 for a long query, the security headers on every other answer) and
:class:`RequestTimer` (``bw_ingest_request_seconds``), :func:`admit_now` (the
checks of the route's ``admit`` dependency: 401/403, then 429), FastAPI's own
handler for the resulting ``HTTPException``, and :func:`field_events`, the
route's body. It reads the headers it needs in one pass over the ASGI scope and
builds a Starlette ``Request`` only for a refusal (its handler and the audit
trail take one). The FastAPI route stays: it documents the route in
``/openapi.json`` and answers every request this door declines (another
method, a ``root_path``). ``tests/integration/test_ingest_fastpath.py``
compares both answers for every refusal.
"""

from __future__ import annotations

import time
from typing import Any, cast

from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from services.common.auth import token_from_header
from services.common.security import SecurityHeaders, security_headers
from services.ingest.metrics import REQUEST_SECONDS, series
from services.ingest.routes import FIELD_EVENTS, FIELD_SCOPE, Posted, admit_now, field_events


class FieldEventsDoor:
    """The door's ASGI app: the layers of ``app``'s stack for this route, as one."""

    def __init__(self, app: FastAPI, max_query_bytes: int) -> None:
        self.app = app
        self.on_http_error: ExceptionHandler = app.exception_handlers.get(
            HTTPException, http_exception_handler
        )
        self.on_server_error = app.exception_handlers.get(500) or app.exception_handlers.get(
            Exception
        )
        self.max_query_bytes = max_query_bytes
        self._too_long = SecurityHeaders(None, max_query_bytes).refuse_long_query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False  # as ServerErrorMiddleware tracks it: no 500 after a start

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            query: bytes = scope.get("query_string", b"")
            if len(query) > self.max_query_bytes:
                await self._too_long(scope, receive, tracked, len(query))  # not timed
                return
            begun = time.perf_counter()
            status = 500  # as RequestTimer counts an answer that never started
            try:
                response, extra = await self._respond(scope, receive)
                if type(response).__call__ is Response.__call__ and response.background is None:
                    # What Response.__call__ sends, sent here: no send wrappers to go
                    # through for the security headers, the status and the start.
                    status = response.status_code
                    started = True
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [*response.raw_headers, *extra],
                        }
                    )
                    await send({"type": "http.response.body", "body": response.body})
                else:

                    async def secured(message: Message) -> None:
                        nonlocal status
                        if message["type"] == "http.response.start":
                            status = int(message["status"])
                            message["headers"] = [*message.get("headers", []), *extra]
                        await tracked(message)

                    await response(scope, receive, secured)
            finally:
                series(REQUEST_SECONDS, FIELD_EVENTS, str(status)).observe(
                    time.perf_counter() - begun
                )
        except Exception as exc:
            if started:
                raise
            # Starlette's own 500 (debug page, the app's handler or its default), sent
            # with the bare ``send`` as ServerErrorMiddleware does; it raises again.
            await ServerErrorMiddleware(
                _Raise(exc), handler=self.on_server_error, debug=self.app.debug
            )(scope, receive, send)
            raise

    async def _respond(
        self, scope: Scope, receive: Receive
    ) -> tuple[Response, tuple[tuple[bytes, bytes], ...]]:
        """The answer and the security headers it gets."""
        authorization: bytes | None = None
        content_type: bytes | None = None
        content_length: bytes | None = None
        host = b""
        for name, value in scope["headers"]:
            # The first of each, as Starlette's Headers.get; the last Host, as
            # SecurityHeaders' dict() of the headers keeps it.
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"content-length":
                if content_length is None:
                    content_length = value
            elif name == b"host":
                host = value
        extra = security_headers(scope.get("scheme") == "https", host, False)
        state = self.app.state
        ingest = state.ingest
        try:
            principal = admit_now(
                state,
                ingest,
                token_from_header(authorization.decode("latin-1") if authorization else ""),
                FIELD_SCOPE,
                lambda: Request(scope, receive),
            )
        except HTTPException as exc:
            return await self._refusal(Request(scope, receive), exc), extra
        posted = Posted(
            content_type.decode("latin-1") if content_type is not None else "",
            content_length.decode("latin-1") if content_length is not None else "",
            receive,
        )
        return await field_events(ingest, principal, posted), extra

    async def _refusal(self, request: Request, exc: HTTPException) -> Response:
        # As Starlette's ExceptionMiddleware calls a handler.
        handler: Any = self.on_http_error
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        return cast(Response, response)


class _Raise:
    """An ASGI app that raises ``exc``: ServerErrorMiddleware answers it as it would."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise self.exc


def field_events_door(app: FastAPI, max_query_bytes: int) -> ASGIApp:
    """The door's ASGI app: what ``app``'s stack does for ``POST /v1/field-events``."""
    return FieldEventsDoor(app, max_query_bytes)


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
