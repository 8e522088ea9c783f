"""Browser hardening and request bounds for the HTTP services (a pure ASGI middleware).

Every HTTP response gets ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and a
``Content-Security-Policy``; over TLS also ``Strict-Transport-Security``. The
policy is strict for the dashboard and everything else (scripts, styles, images
and fonts from the service's own origin only, no inline code; ``connect-src``
is the own origin for REST plus the ws/wss form of it for the feed; no framing,
no ``<base>``, no plugins). Only the interactive API docs (``/docs``,
``/redoc``, which FastAPI builds from a CDN with inline scripts) get just
``frame-ancestors 'none'``.

A query string longer than ``max_query_bytes`` is refused before anything
parses it: 414 for HTTP, a close before the handshake for WebSocket.
"""

from __future__ import annotations

import functools
import re
from collections.abc import MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = dict[str, Any]

# A Host header is the client's to choose: only a plain host[:port] goes into the policy.
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
DOCS_PATHS = ("/docs", "/redoc")
HSTS = b"max-age=31536000"


def content_security_policy(scheme: str, host: str | None) -> str:
    ws = "wss" if scheme in ("https", "wss") else "ws"
    connect = "'self'" + (f" {ws}://{host}" if host and _HOST.match(host) else "")
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src {connect}; manifest-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )


# Longer than any host[:port] _HOST accepts: such a Host is left out of the policy.
_MAX_HOST = 262


def security_headers(secure: bool, host: bytes, docs: bool) -> tuple[tuple[bytes, bytes], ...]:
    """The headers every response gets, for a request over TLS (``secure``) or not, with
    this ``Host`` header (its raw bytes; the last one when there are several) and to
    the API docs (``docs``) or not. Cached: they depend on nothing else; a client
    naming many hosts only evicts entries, and an overlong one is not kept."""
    return _security_headers(secure, host if len(host) <= _MAX_HOST else b"", docs)


@functools.lru_cache(maxsize=256)
def _security_headers(secure: bool, host: bytes, docs: bool) -> tuple[tuple[bytes, bytes], ...]:
    if docs:
        policy = "frame-ancestors 'none'"
    else:
        policy = content_security_policy("https" if secure else "http", host.decode("latin-1"))
    extra = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", policy.encode()),
    ]
    if secure:
        extra.append((b"strict-transport-security", HSTS))
    return tuple(extra)


class SecurityHeaders:
    """Adds the security headers to every HTTP response and bounds query strings."""

    def __init__(self, app: Any, max_query_bytes: int = 4096) -> None:
        self.app = app
        self.max_query_bytes = max_query_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if len(query) > self.max_query_bytes:
            await self.refuse_long_query(scope, receive, send, len(query))
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        extra = security_headers(
            scope.get("scheme") == "https",
            headers.get(b"host", b""),
            scope.get("path", "").startswith(DOCS_PATHS),
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def refuse_long_query(self, scope: Scope, receive: Any, send: Any, size: int) -> None:
        """The answer to a query string of ``size`` bytes, over ``max_query_bytes``."""
        if scope["type"] == "websocket":
            # Closing before the handshake answers the upgrade with HTTP 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        body = orjson.dumps(
            {
                "detail": f"query string of {size} bytes is longer than the "
                f"{self.max_query_bytes} allowed",
                "errors": [{"field": "query", "reason": "too long"}],
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 414,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
