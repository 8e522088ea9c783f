"""Security headers and the query-string bound of the HTTP services."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.common.security import SecurityHeaders, content_security_policy


def _app() -> FastAPI:
    app = FastAPI()
    parsed: list[str] = []

    @app.get("/x")
    async def x(q: str = "") -> dict[str, int]:
        parsed.append(q)
        return {"n": len(q)}

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hi")
        await socket.close()

    app.add_middleware(SecurityHeaders, max_query_bytes=4096)
    app.state.parsed = parsed
    return app


def test_an_8_kb_query_string_is_refused_with_414_before_parsing() -> None:
    app = _app()
    with TestClient(app) as client:
        resp = client.get("/x?q=" + "a" * 8192)
        ok = client.get("/x?q=" + "a" * 100)

    assert resp.status_code == 414
    assert "longer than the 4096 allowed" in resp.json()["detail"]
    assert ok.status_code == 200
    assert app.state.parsed == ["a" * 100]


def test_an_8_kb_websocket_query_is_refused_before_the_handshake() -> None:
    with TestClient(_app()) as client:
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws?q=" + "a" * 8192):
            pass
        with client.websocket_connect("/ws?q=short") as ws:
            assert ws.receive_text() == "hi"


def test_every_response_has_the_headers_and_hsts_only_over_tls() -> None:
    with TestClient(_app()) as client:
        plain = client.get("/x")
    with TestClient(_app(), base_url="https://bw.example:8443") as client:
        tls = client.get("/x")

    for resp in (plain, tls):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert "strict-transport-security" not in plain.headers
    assert tls.headers["strict-transport-security"] == "max-age=31536000"
    assert "connect-src 'self' wss://bw.example:8443;" in tls.headers["content-security-policy"]


@pytest.mark.parametrize("host", ["evil.example; script-src *", "a b", "x" * 300, "h:99999999", ""])
def test_a_strange_host_header_never_reaches_the_policy(host: str) -> None:
    policy = content_security_policy("http", host)
    assert "connect-src 'self';" in policy
    assert policy.count("script-src") == 1


def test_uvicorn_log_lines_lose_token_secrets() -> None:
    import logging

    from services.common.serve import RedactTokens

    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws/feed?token=bw_3fa85f64_s3cr3t-Value_x&hourly=true"),
        None,
    )
    RedactTokens().filter(record)
    line = record.getMessage()
    assert "s3cr3t" not in line
    assert "token=bw_3fa85f64_…&hourly=true" in line
