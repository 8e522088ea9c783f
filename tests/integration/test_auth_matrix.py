"""Every ingest and API route and feed x (no token, wrong token, expired, revoked and
rotated tokens, token without the scope, right token).

401 without a token or with a wrong, expired, revoked or rotated-away one, 403 with
a real token that lacks the route's scope, 2xx with the right one; nothing refused
reaches Kafka. Revocation and rotation happen while the services run: they must
refuse the token within 5 s without a restart, and close its open feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
import websockets
from fastapi.testclient import TestClient
from pydantic import SecretStr

from schemas.models import AuditRecord
from services.cli import main as cli_main
from services.common.auth import SCOPES, create_token, hash_token, revoke_token, rotate_token
from services.common.kafka import make_producer
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.runtime.broker import free_port, tail
from tests.integration.conftest import REPO, Deployment, wait_until
from tests.integration.test_api import ROUTES as API_ROUTES
from tests.integration.test_api import ApiProcess, _alert, _state, produce
from tests.integration.test_ingest import (
    bearer,
    event_ids_in,
    field_event,
    open_door,
    read_topic,
    report_event,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    ok: int
    body: Callable[[], Any] | None


ROUTES = [
    Route("POST", "/v1/field-events", "ingest:field", 202, field_event),
    Route("POST", "/v1/reports", "ingest:report", 202, report_event),
    Route("GET", "/v1/dead-letter", "admin", 200, None),
]


@dataclass
class Matrix:
    client: TestClient
    tokens: dict[str, str]  # "right:<scope>", "lacking:<scope>"
    sent: dict[str, list[str]]  # case -> event ids posted with it
    read: Callable[[], Any]


@pytest.fixture(scope="module")
def matrix(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    workdir = tmp_path_factory.mktemp("auth")
    settings, common, _ = open_door(kafka, workdir)
    tokens_file = workdir / "matrix-tokens.json"
    tokens = {}
    soon = datetime.now(UTC) + timedelta(seconds=2)
    for route in ROUTES:
        tokens["right:" + route.scope] = create_token(tokens_file, [route.scope])
        others = [s for s in SCOPES if s != route.scope]
        tokens["lacking:" + route.scope] = create_token(tokens_file, others)
        tokens["expired:" + route.scope] = create_token(tokens_file, [route.scope], "", soon)
        tokens["revoked:" + route.scope] = create_token(tokens_file, [route.scope])
        tokens["rotated:" + route.scope] = create_token(tokens_file, [route.scope])
    settings = settings.model_copy(update={"tokens_file": tokens_file})
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        # While ingest runs: revoke, rotate, let the short-lived ones expire.
        for route in ROUTES:
            for case in ("revoked", "rotated"):
                token = tokens[f"{case}:{route.scope}"]
                assert (
                    client.request(route.method, route.path, headers=bearer(token)).status_code
                    != 401
                )
            revoke_token(tokens_file, tokens["revoked:" + route.scope].split("_")[1])
            rotate_token(tokens_file, tokens["rotated:" + route.scope].split("_")[1])
        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.1)
        yield Matrix(
            client,
            tokens,
            {},
            lambda: event_ids_in(read_topic(common, common.topic_prefix + "field-events", 1)),
        )


def _headers(case: str, route: Route, tokens: dict[str, str]) -> dict[str, str]:
    right = tokens["right:" + route.scope]
    token_id = right.split("_")[1]
    return {
        "none": {},
        "wrong-secret": bearer(f"bw_{token_id}_{'x' * 32}"),
        "unknown-id": bearer("bw_deadbeef_" + "y" * 32),
        "not-a-token": bearer("hello"),
        "basic-scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "lacking-scope": bearer(tokens["lacking:" + route.scope]),
        "expired": bearer(tokens["expired:" + route.scope]),
        "revoked": bearer(tokens["revoked:" + route.scope]),
        "rotated-old-secret": bearer(tokens["rotated:" + route.scope]),
        "right": bearer(right),
    }[case]


EXPECTED = {
    "none": 401,
    "wrong-secret": 401,
    "unknown-id": 401,
    "not-a-token": 401,
    "basic-scheme": 401,
    "lacking-scope": 403,
    "expired": 401,
    "revoked": 401,
    "rotated-old-secret": 401,
    "right": None,  # the route's success status
}


@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("route", ROUTES, ids=[r.path for r in ROUTES])
def test_route_by_token(matrix: Matrix, route: Route, case: str) -> None:
    body = route.body() if route.body else None
    content = orjson.dumps(body) if body is not None else None
    headers = {**_headers(case, route, matrix.tokens), "content-type": "application/json"}
    if body is not None and route.path == "/v1/field-events":
        matrix.sent.setdefault(case, []).append(body["event_id"])

    resp = matrix.client.request(route.method, route.path, content=content, headers=headers)

    expected = EXPECTED[case] or route.ok
    assert resp.status_code == expected, resp.text
    if expected == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in resp.json()["detail"]
    if expected == 403:
        assert resp.json()["detail"] == f"this token lacks the {route.scope!r} scope"


def test_nothing_refused_reaches_kafka(matrix: Matrix) -> None:
    if set(matrix.sent) != set(EXPECTED):
        pytest.skip("needs the whole matrix above in this session")
    in_kafka = matrix.read()
    for case, ids in matrix.sent.items():
        for event_id in ids:
            assert (event_id in in_kafka) == (case == "right"), case


def test_operations_routes_need_no_token(matrix: Matrix) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert matrix.client.get(path).status_code == 200, path


def test_tokens_from_bw_tokens_are_honoured(kafka: str, tmp_path: Path) -> None:
    token = "bw_c0ffee00_" + "s" * 32
    entries = [{"id": "c0ffee00", "hash": hash_token(token), "scopes": ["ingest:field"]}]
    settings, _, _ = open_door(kafka, tmp_path)
    settings = settings.model_copy(
        update={
            "tokens_file": tmp_path / "none.json",
            "tokens": SecretStr(orjson.dumps(entries).decode()),
        }
    )
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        ok = client.post("/v1/field-events", json=field_event(), headers=bearer(token))
        forbidden = client.post("/v1/reports", json=report_event(), headers=bearer(token))

    assert ok.status_code == 202, ok.text
    assert forbidden.status_code == 403


# --- the API: every route and feed with expired, revoked and rotated tokens -----------


def _ws_close_code(url: str, token: str) -> int | str:
    async def run() -> int | str:
        try:
            async with websockets.connect(url, subprotocols=[websockets.Subprotocol(token)]) as ws:
                first = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=5))
                return str(first["messages"][0]["type"])
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else -1

    return asyncio.run(run())


def test_api_refuses_expired_revoked_and_rotated_tokens_without_restart(
    deployment: Deployment, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.json"
    soon = datetime.now(UTC) + timedelta(seconds=3)
    scopes = ["read", "ack"]
    expiring = create_token(tokens_file, scopes, "expiring", soon)
    revoked = create_token(tokens_file, scopes, "to revoke")
    rotated = create_token(tokens_file, scopes, "to rotate")
    produce(deployment, [_state("LV-KRA", 1)], [_alert("LV-KRA", 1, "firing")])
    api = ApiProcess(deployment, tokens_file, tmp_path)
    try:
        api.wait_ready()

        async def open_feeds() -> dict[str, float | int]:
            """Open a feed per token, then revoke/rotate; when each is closed, and how."""
            sockets = {}
            for name, token in (("revoked", revoked), ("rotated", rotated)):
                ws = await websockets.connect(
                    api.ws + "/ws/feed", subprotocols=[websockets.Subprotocol(token)]
                )
                await asyncio.wait_for(ws.recv(), timeout=5)  # the snapshot
                sockets[name] = ws
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            revoke_token(tokens_file, revoked.split("_")[1])
            rotate_token(tokens_file, rotated.split("_")[1])
            out: dict[str, float | int] = {}
            for name, ws in sockets.items():
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), timeout=10)
                out[name + ":code"] = ws.close_code or -1
                out[name + ":after"] = loop.time() - t0
            return out

        closed = asyncio.run(open_feeds())
        for name in ("revoked", "rotated"):
            assert closed[name + ":code"] == 4401, closed
            assert closed[name + ":after"] < 5.0, closed
        print(
            f"\n[figure] open feed closed after revoke: {closed['revoked:after']:.2f}s, "
            f"after rotate: {closed['rotated:after']:.2f}s"
        )

        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
        for label, token in (("expired", expiring), ("revoked", revoked), ("rotated", rotated)):
            for method, path, _scope in API_ROUTES:
                body = {"by": "duty officer"} if method == "POST" else None
                status, detail = api.request(path, token, body)
                assert status == 401, (label, method, path, status, detail)
            for feed in ("/ws/feed", "/ws/alerts"):
                assert _ws_close_code(api.ws + feed, token) == 4401, (label, feed)
        status, detail = api.request("/api/v1/sections", expiring)
        assert detail["detail"] == "this bearer token is expired"

        # The rotated token's new secret works everywhere, with the same identity.
        token_id = rotated.split("_")[1]
        new, _ = rotate_token(tokens_file, token_id)
        wait_until(
            lambda: api.request("/api/v1/sections", new)[0] == 200, 5, "the new secret accepted"
        )
        for method, path, _scope in API_ROUTES:
            if path.startswith("/sse/"):
                continue
            body = {"by": "duty officer"} if method == "POST" else None
            status, _ = api.request(path, new, body)
            assert status in (200, 202), (method, path, status)
        assert _ws_close_code(api.ws + "/ws/alerts", new) == "snapshot"
    finally:
        api.stop()


# --- abuse limits on the API -----------------------------------------------------------


def test_api_rate_limits_rest_caps_feeds_per_token_and_bounds_queries(
    deployment: Deployment, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.json"
    busy = create_token(tokens_file, ["read"], "busy")
    other = create_token(tokens_file, ["read"], "other")
    api = ApiProcess(
        deployment,
        tokens_file,
        tmp_path,
        BW_RATE_LIMIT_PER_SECOND="0.2",  # one more every 5 s: robust on a busy machine
        BW_RATE_LIMIT_BURST="5",
        BW_FEED_MAX_PER_TOKEN="2",
    )
    try:
        api.wait_ready()
        statuses = [api.request("/api/v1/sections", busy)[0] for _ in range(8)]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:], statuses
        req = urllib.request.Request(
            api.url + "/api/v1/sections", headers={"Authorization": f"Bearer {busy}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 429
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert "requests/s with this token" in orjson.loads(refused.value.read())["detail"]
        # Another token has its own bucket.
        assert api.request("/api/v1/sections", other)[0] == 200
        with urllib.request.urlopen(api.url + "/metrics", timeout=5) as resp:
            limited = re.search(rb"^bw_api_rate_limited_total (\S+)$", resp.read(), re.M)
        assert limited is not None and float(limited.group(1)) >= 2

        async def feeds() -> list[int | str]:
            proto = [websockets.Subprotocol(other)]
            first = await websockets.connect(api.ws + "/ws/feed", subprotocols=proto)
            second = await websockets.connect(api.ws + "/ws/alerts", subprotocols=proto)
            try:
                for ws in (first, second):
                    await asyncio.wait_for(ws.recv(), timeout=5)
                third = await asyncio.to_thread(_ws_close_code, api.ws + "/ws/feed", other)
                sse = urllib.request.Request(
                    api.url + "/sse/alerts", headers={"Authorization": f"Bearer {other}"}
                )
                try:
                    await asyncio.to_thread(urllib.request.urlopen, sse, timeout=5)
                    sse_status: int | str = 200
                except urllib.error.HTTPError as err:
                    sse_status = err.code
            finally:
                await first.close()
                await second.close()
            await asyncio.sleep(0.5)
            after = await asyncio.to_thread(_ws_close_code, api.ws + "/ws/feed", other)
            return [third, sse_status, after]

        third, sse_status, after = asyncio.run(feeds())
        assert third == 4429  # a third feed of the same token
        assert sse_status == 429
        assert after == "snapshot"  # closing frees the slots

        long_query = "?section=" + "A" * 8192
        status, body = api.request("/api/v1/alerts" + long_query, other)
        assert status == 414, body
        assert "query string" in body["detail"]
        # Over BW_MAX_QUERY_BYTES: refused before the handshake (HTTP 403).
        with pytest.raises(websockets.InvalidStatus) as invalid:
            asyncio.run(_open(api.ws + "/ws/feed?token=" + other + "&x=" + "b" * 6000))
        assert invalid.value.response.status_code == 403
        # 8 kB: the request line is beyond what the WebSocket server reads at all; no
        # session either way.
        with pytest.raises((websockets.InvalidStatus, websockets.InvalidMessage, TimeoutError)):
            asyncio.run(_open(api.ws + "/ws/feed?token=" + other + "&x=" + "b" * 8192))
    finally:
        api.stop()


async def _open(url: str) -> None:
    async with websockets.connect(url, open_timeout=3):
        pass


# --- the audit trail -------------------------------------------------------------------


def test_every_audited_action_is_on_the_audit_topic_and_readable_by_admins(
    deployment: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tokens_file = tmp_path / "tokens.json"
    admin = create_token(tokens_file, ["admin", "read"], "audit desk")
    acker = create_token(tokens_file, ["read", "ack"], "LV duty desk")
    produce(deployment, [_state("LV-KRA", 1)], [_alert("LV-KRA", 1, "firing")])
    api = ApiProcess(deployment, tokens_file, tmp_path)
    ingest_settings = IngestSettings(
        kafka_bootstrap=deployment.bootstrap,
        topic_prefix=deployment.prefix,
        tokens_file=tokens_file,
        rate_limit_per_second=0,
    )
    try:
        api.wait_ready()
        with TestClient(create_app(ingest_settings)) as ingest:
            wait_until(lambda: ingest.get("/readyz").status_code == 200, 30, "ingest ready")

            # Token changes through the command, which sends its record to Kafka.
            monkeypatch.setenv("BW_KAFKA_BOOTSTRAP", deployment.bootstrap)
            monkeypatch.setenv("BW_TOPIC_PREFIX", deployment.prefix)
            cli = ["--tokens-file", str(tokens_file)]
            for argv in (["create", "--scopes", "read", "--label", "temp", *cli],):
                with pytest.raises(SystemExit):
                    cli_main(["token", *argv])
            created = capsys.readouterr().out.strip()
            temp_id = created.split("_")[1]
            for argv in (["rotate", temp_id, *cli], ["revoke", temp_id, *cli]):
                with pytest.raises(SystemExit) as done:
                    cli_main(["token", *argv])
                assert done.value.code == 0
            rotated = capsys.readouterr().out.splitlines()[0]

            # A dead-letter read, refused attempts on both services, an ack.
            assert ingest.get("/v1/dead-letter?limit=5", headers=bearer(admin)).status_code == 200
            for _ in range(30):
                refused_status = ingest.get("/v1/dead-letter", headers=bearer("bw_feed0000_x"))
                assert refused_status.status_code == 401
            time.sleep(1.2)  # the refusal budget refills: the next record says what it skipped
            assert ingest.get("/v1/dead-letter", headers=bearer("bw_feed0000_y")).status_code == 401
            assert api.request("/api/v1/sections", "bw_cafe0000_nope")[0] == 401
            # Revoked since (the API sees the change within its 1 s reload period).
            wait_until(
                lambda: (
                    api.request("/api/v1/sections", rotated)
                    == (401, {"detail": "this bearer token is revoked"})
                ),
                5,
                "the revoked token refused as revoked",
            )
            status, ack = api.request(
                "/api/v1/alerts/crossings-24h.LV-KRA.1/ack", acker, {"by": "Ivan at the desk"}
            )
            assert status == 202, ack

        acker_id = acker.split("_")[1]
        assert (ack["token_id"], ack["token_label"], ack["by"]) == (
            acker_id,
            "LV duty desk",
            "Ivan at the desk",
        )
        # Without a typed name the token's label is shown.
        status, ack2 = api.request("/api/v1/alerts/crossings-24h.LV-KRA.1/ack", acker, {})
        assert status == 202 and ack2["by"] == "LV duty desk"

        def trail() -> list[dict[str, Any]]:
            status, records = api.request("/api/v1/audit?limit=1000", admin)
            assert status == 200, records
            return list(records)

        wanted = {"token.create", "token.rotate", "token.revoke", "dead_letter.read"}
        wait_until(
            lambda: (
                wanted <= {r["action"] for r in trail()}
                and {r["service"] for r in trail() if r["action"] == "auth.refused"}
                >= {"ingest", "api"}
                # The revoked token's refusal is the API's last record: wait for it too.
                and any(
                    r["action"] == "auth.refused" and r["actor"]["token_id"] == temp_id
                    for r in trail()
                )
            ),
            15,
            "every audited action on the audit topic",
        )
        records = trail()
        by_action: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            by_action.setdefault(rec["action"], []).append(rec)
        for action in ("token.create", "token.rotate", "token.revoke"):
            [rec] = [r for r in by_action[action] if r["target"] == temp_id]
            assert rec["service"] == "cli" and rec["actor"]["os_user"], rec
        [read] = by_action["dead_letter.read"]
        assert read["actor"] == {
            "token_id": admin.split("_")[1],
            "label": "audit desk",
            "os_user": None,
        }
        assert read["detail"]["limit"] == 5
        refused = by_action["auth.refused"]
        reasons = {(r["service"], r["actor"]["token_id"], r["detail"]["reason"]) for r in refused}
        assert ("ingest", "feed0000", "unknown") in reasons
        assert ("api", "cafe0000", "unknown") in reasons
        assert ("api", temp_id, "revoked") in reasons
        # Refusals are rate-limited: 30 bad tries on ingest make at most the burst,
        # and the count of the rest is kept once one more is recorded.
        ingest_refusals = [r for r in refused if r["service"] == "ingest"]
        assert 1 <= len(ingest_refusals) < 31
        assert sum(int(r["detail"].get("suppressed") or 0) for r in ingest_refusals) >= 5
        assert (
            len(ingest_refusals)
            + sum(int(r["detail"].get("suppressed") or 0) for r in ingest_refusals)
            == 31
        )
        assert all(r["client"] for r in refused)

        # Filters, and admins only.
        status, only = api.request(f"/api/v1/audit?action=token.revoke&token_id={temp_id}", admin)
        assert status == 200 and [r["action"] for r in only] == ["token.revoke"]
        assert api.request("/api/v1/audit", acker)[0] == 403
        assert api.request("/api/v1/audit", None)[0] == 401

        # The topic itself: every record valid, and no secret anywhere in it.
        raw = [
            orjson.loads(r.value)
            for r in read_topic(deployment.settings(), deployment.prefix + "audit", len(records))
        ]
        for rec in raw:
            AuditRecord.model_validate(rec)
        # Newest first = the reverse of the topic's (append) order.
        assert [r["audit_id"] for r in records] == [
            r["audit_id"] for r in reversed(raw[: len(records)])
        ]
        text = orjson.dumps(raw).decode()
        for token in (admin, acker, created, rotated):
            assert token.split("_", 2)[2] not in text
        assert "sha256:" not in text
    finally:
        api.stop()


# --- TLS and mutual TLS --------------------------------------------------------------


class TlsService:
    """``python -m services.<name>`` serving TLS, as deployed."""

    def __init__(self, name: str, dep: Deployment, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}-{self.port}.log"
        full = dep.env()
        full.update({"BW_PORT": str(self.port), "BW_AUTH_ENABLED": "true", **env})
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env=full,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, context: ssl.SSLContext) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1, context=context) as r:
                    return bool(r.status == 200)
            except (OSError, ssl.SSLError):
                return False

        wait_until(ready, 60, "TLS service ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def _plain_http_fails(port: int) -> str:
    """What a plain-HTTP request to a TLS port gets: never an HTTP answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError) as exc:
            return type(exc).__name__
    assert not data.startswith(b"HTTP/1.1 200"), data
    return "closed" if not data else "not http"


def test_api_and_ingest_over_tls_and_mutual_tls(deployment: Deployment, tmp_path: Path) -> None:
    server_ca = trustme.CA()
    field_ca = trustme.CA()  # signs the field units' client certificates
    rogue_ca = trustme.CA()
    cert = server_ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server-key.pem"))
    field_ca.cert_pem.write_to_path(str(tmp_path / "field-ca.pem"))
    tls_env = {
        "BW_TLS_CERT_FILE": str(tmp_path / "server.pem"),
        "BW_TLS_KEY_FILE": str(tmp_path / "server-key.pem"),
    }
    tokens_file = tmp_path / "tokens.json"
    reader = create_token(tokens_file, ["read"], "tls reader")
    unit = create_token(tokens_file, ["ingest:field"], "field unit 7")
    env = {**tls_env, "BW_TOKENS_FILE": str(tokens_file)}
    api = TlsService("api", deployment, tmp_path, env)
    ingest = TlsService(
        "ingest",
        deployment,
        tmp_path,
        {**env, "BW_TLS_CLIENT_CA_FILE": str(tmp_path / "field-ca.pem")},
    )
    trusting = ssl.create_default_context()
    server_ca.configure_trust(trusting)
    with_unit_cert = ssl.create_default_context()
    server_ca.configure_trust(with_unit_cert)
    field_ca.issue_cert("field-unit-7.example").configure_cert(with_unit_cert)
    with_rogue_cert = ssl.create_default_context()
    server_ca.configure_trust(with_rogue_cert)
    rogue_ca.issue_cert("field-unit-7.example").configure_cert(with_rogue_cert)
    try:
        api.wait_ready(trusting)
        ingest.wait_ready(with_unit_cert)

        # https with the CA trusted: the API answers, with HSTS and a wss connect-src.
        req = urllib.request.Request(
            api.url + "/api/v1/sections", headers={"Authorization": f"Bearer {reader}"}
        )
        with urllib.request.urlopen(req, timeout=5, context=trusting) as resp:
            assert resp.status == 200
            assert resp.headers["strict-transport-security"] == "max-age=31536000"
            assert f"wss://127.0.0.1:{api.port}" in resp.headers["content-security-policy"]
        # Not trusted: refused by the client. Plain HTTP: refused by the server.
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(api.url + "/healthz", timeout=5)
        assert _plain_http_fails(api.port)
        assert _plain_http_fails(ingest.port)

        # The live feed over wss.
        async def wss() -> str:
            async with websockets.connect(
                f"wss://127.0.0.1:{api.port}/ws/feed",
                ssl=trusting,
                subprotocols=[websockets.Subprotocol(reader)],
            ) as ws:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=5))
                return str(frame["messages"][0]["type"])

        assert asyncio.run(wss()) == "snapshot"

        # Mutual TLS on ingest: a field unit's certificate from the field CA is let in...
        post = urllib.request.Request(
            ingest.url + "/v1/field-events",
            data=orjson.dumps(field_event()),
            headers={"Authorization": f"Bearer {unit}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(post, timeout=10, context=with_unit_cert) as resp:
            assert resp.status == 202
        # ...no certificate, or one from another CA, fails the handshake.
        for context in (trusting, with_rogue_cert):
            with pytest.raises((ssl.SSLError, ConnectionResetError, urllib.error.URLError)):
                with urllib.request.urlopen(post, timeout=10, context=context) as resp:
                    resp.read()
    finally:
        api.stop()
        ingest.stop()


def test_bad_tls_settings_stop_start_up_naming_the_variable(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate", encoding="utf-8")
    cases = [
        ({"BW_TLS_CERT_FILE": str(junk)}, "give both or neither"),
        (
            {"BW_TLS_CERT_FILE": str(junk), "BW_TLS_KEY_FILE": str(tmp_path / "nope")},
            "no such file",
        ),
        ({"BW_TLS_CERT_FILE": str(junk), "BW_TLS_KEY_FILE": str(junk)}, "BW_TLS_CERT_FILE"),
    ]
    for env, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "services.ingest"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("BW_")}, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr, done.stderr


# --- country-scoped tokens -------------------------------------------------------------


def _send(dep: Deployment, records: list[tuple[str, str, dict[str, Any]]]) -> None:
    """(topic suffix, key, value) records on the test's topics, acknowledged."""

    async def send() -> None:
        producer = make_producer(dep.settings())
        await producer.start()
        try:
            futures = [
                await producer.send(dep.prefix + topic, orjson.dumps(value), key=key.encode())
                for topic, key, value in records
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


def _scoped_world(dep: Deployment) -> list[tuple[str, str, dict[str, Any]]]:
    """LV and PL data of every kind the API serves: states, alerts (a section alert and a
    country-level discrepancy alert each), field events, reports with their analyses,
    assessments."""
    now = datetime.now(UTC)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for sid in ("LV-KRA", "PL-KUZ"):
        out.append(("section-state", sid, _state(sid, 1, 7)))
        out.append(("alerts", f"crossings-24h.{sid}.1", _alert(sid, 1, "firing")))
        country = sid[:2]
        discrepancy = _alert(f"{country}-ALL", 1, "firing") | {
            "alert_id": f"official-vs-field.{country}-ALL.1",
            "rule": "official-vs-field",
            "window": "weekend",
        }
        out.append(("alerts", discrepancy["alert_id"], discrepancy))
        out.append(
            (
                "field-events",
                sid,
                {"schema_version": 1, "section_id": sid, "events": [field_event(section_id=sid)]},
            )
        )
        report = report_event(
            report_id=f"scope-{country.lower()}-1",
            country=country,
            figures=[{"kind": "crossing_attempt", "count": 9, "section_id": sid}],
        )
        out.append(("report-events", country, report))
        analysis = {
            "schema_version": 1,
            "report_id": report["report_id"],
            "country": country,
            "published_at": report["published_at"],
            "source_type": "official",
            "language": "en",
            "extractor": "test",
            "analysed_at": now.isoformat(),
            "figures": [],
            "signals": [],
        }
        out.append(("report-analysis", country, analysis))
        assessment = {
            "schema_version": 1,
            "country": country,
            "stage": "monitoring",
            "summary": "No criterion is met.",
            "factors": [],
            "measures_reported": [],
            "assessed_at": now.isoformat(),
        }
        out.append(("assessment", country, assessment))
    return out


def _countries_in(value: Any) -> set[str]:
    """Every country an API answer mentions (``country`` fields, section ids)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "country" and isinstance(item, str):
                found.add(item)
            elif key == "section_id" and isinstance(item, str):
                found.add(item[:2])
            else:
                found |= _countries_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= _countries_in(item)
    return found


# Every REST route with per-country data: (path, what a scoped token gets from it).
SCOPED_LISTS = [
    "/api/v1/state",
    "/api/v1/countries",
    "/api/v1/sections",
    "/api/v1/alerts",
    "/api/v1/alerts?country=PL",
    "/api/v1/alerts?section=PL-*",
    "/api/v1/events/recent",
    "/api/v1/reports/recent",
    "/api/v1/reports/recent?country=PL",
    "/api/v1/assessment",
]
# One object of PL (outside an LV token) and a truly unknown one of the same shape.
SCOPED_OBJECTS = [
    ("/api/v1/sections/PL-KUZ", "/api/v1/sections/PL-NOPE"),
    ("/api/v1/sections/PL-KUZ?hours=168", "/api/v1/sections/PL-NOPE?hours=168"),
    ("/api/v1/alerts/crossings-24h.PL-KUZ.1", "/api/v1/alerts/crossings-24h.PL-NOPE.1"),
    ("/api/v1/alerts/official-vs-field.PL-ALL.1", "/api/v1/alerts/official-vs-field.PL-NONE.1"),
    ("/api/v1/reports/scope-pl-1", "/api/v1/reports/scope-pl-404"),
    ("/api/v1/assessment/PL", "/api/v1/assessment/XX"),
]


def _feed_messages(url: str, token: str, until: Callable[[list[Any]], bool]) -> list[Any]:
    """The messages of a feed until ``until`` holds for them (or 10 s)."""

    async def run() -> list[Any]:
        got: list[Any] = []
        async with websockets.connect(url, subprotocols=[websockets.Subprotocol(token)]) as ws:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    while not until(got):
                        frame = orjson.loads(await ws.recv())
                        got += frame["messages"]
        return got

    return asyncio.run(run())


def test_a_country_scoped_token_sees_only_its_country_on_every_route_and_feed(
    deployment: Deployment, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.json"
    lv = create_token(tokens_file, ["read", "ack"], "LV duty desk", countries=["LV"])
    both = create_token(tokens_file, ["read", "ack"], "LV+PL desk", countries=["LV", "PL"])
    every = create_token(tokens_file, ["read", "ack"], "all countries")
    _send(deployment, _scoped_world(deployment))
    api = ApiProcess(deployment, tokens_file, tmp_path)
    try:
        api.wait_ready()
        wait_until(
            lambda: (
                len(api.request("/api/v1/assessment", every)[1]) == 2
                and len(api.request("/api/v1/reports/recent", every)[1]) == 2
                and len(api.request("/api/v1/events/recent", every)[1]) == 2
            ),
            15,
            "the view holds both countries",
        )
        # Unscoped: both countries, as before.
        for path in SCOPED_LISTS[:4] + SCOPED_LISTS[6:8] + SCOPED_LISTS[9:]:
            status, body = api.request(path, every)
            assert status == 200 and {"LV", "PL"} <= _countries_in(body), (path, body)
            status, body = api.request(path, both)
            assert status == 200 and {"LV", "PL"} <= _countries_in(body), (path, body)
        # Scoped to LV: lists hold LV only (and still hold it).
        for path in SCOPED_LISTS:
            status, body = api.request(path, lv)
            assert status == 200, (path, status, body)
            assert _countries_in(body) <= {"LV"}, (path, body)
            if "PL" not in path:
                assert "LV" in _countries_in(body), (path, body)
        status, alerts = api.request("/api/v1/alerts?limit=1", lv)
        assert [a["country"] for a in alerts] == ["LV"]  # the page is cut after filtering
        # One PL object: exactly the answer for an id that does not exist.
        for path, unknown in SCOPED_OBJECTS:
            hidden = api.request(path, lv)
            absent = api.request(unknown, lv)
            assert hidden[0] == absent[0] == 404, (path, hidden, absent)
            name = path.rsplit("/", 1)[1].split("?")[0]
            other = unknown.rsplit("/", 1)[1].split("?")[0]
            assert hidden[1] == orjson.loads(
                orjson.dumps(absent[1]).replace(other.encode(), name.encode())
            ), (hidden, absent)
            assert api.request(path, every)[0] == 200, path
        for path in (
            "/api/v1/sections/LV-KRA",
            "/api/v1/alerts/official-vs-field.LV-ALL.1",
            "/api/v1/reports/scope-lv-1",
            "/api/v1/assessment/LV",
        ):
            assert api.request(path, lv)[0] == 200, path
        # Acks: a PL alert is unknown to the LV token; its own alerts take the ack.
        ack = {"by": "duty officer"}
        unknown_ack = api.request("/api/v1/alerts/crossings-24h.PL-NOPE.1/ack", lv, ack)
        assert unknown_ack == (404, {"detail": "unknown alert 'crossings-24h.PL-NOPE.1'"})
        hidden_ack = api.request("/api/v1/alerts/crossings-24h.PL-KUZ.1/ack", lv, ack)
        assert hidden_ack == (404, {"detail": "unknown alert 'crossings-24h.PL-KUZ.1'"})
        assert api.request("/api/v1/alerts/official-vs-field.PL-ALL.1/ack", lv, ack)[0] == 404
        assert api.request("/api/v1/alerts/official-vs-field.LV-ALL.1/ack", lv, ack)[0] == 202
        assert api.request("/api/v1/alerts/crossings-24h.PL-KUZ.1/ack", both, ack)[0] == 202

        # Feeds: the snapshot and what follows hold LV only; the ack of a PL alert, a
        # new PL state and a PL alert never reach the LV token.
        def snapshot(messages: list[Any]) -> bool:
            return bool(messages)

        for feed in ("/ws/feed", "/ws/alerts", "/ws/feed?country=PL", "/ws/feed?sections=PL-*"):
            [first] = _feed_messages(api.ws + feed, lv, snapshot)[:1]
            assert first["type"] == "snapshot"
            assert _countries_in(first["payload"]) <= {"LV"}, (feed, first)
            if "PL" not in feed:
                assert "LV" in _countries_in(first["payload"]["alerts"]), feed
        unscoped = _feed_messages(api.ws + "/ws/feed", every, snapshot)[0]
        assert {"LV", "PL"} <= _countries_in(unscoped["payload"]["alerts"]), unscoped

        async def live() -> dict[str, list[Any]]:
            out: dict[str, list[Any]] = {}
            sockets = {}
            for name, token in (("lv", lv), ("every", every)):
                ws = await websockets.connect(
                    api.ws + "/ws/feed", subprotocols=[websockets.Subprotocol(token)]
                )
                await asyncio.wait_for(ws.recv(), timeout=5)
                sockets[name] = ws
                out[name] = []
            pl_alert = _alert("PL-KUZ", 2, "firing", "critical")
            await asyncio.to_thread(
                _send,
                deployment,
                [
                    ("section-state", "PL-KUZ", _state("PL-KUZ", 2, 40)),
                    ("alerts", pl_alert["alert_id"], pl_alert),
                ],
            )
            pl_ack = "/api/v1/alerts/crossings-24h.PL-KUZ.1/ack"
            assert (await asyncio.to_thread(api.request, pl_ack, both, ack))[0] == 202
            await asyncio.sleep(0.5)
            await asyncio.to_thread(
                _send, deployment, [("section-state", "LV-KRA", _state("LV-KRA", 2, 41))]
            )
            for name, ws in sockets.items():
                # Until the last LV state, then a second more for stragglers.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        while not any(
                            m["type"] == "section_state"
                            and m["payload"]["version"] == 2
                            and m["payload"]["section_id"] == "LV-KRA"
                            for m in out[name]
                        ):
                            out[name] += orjson.loads(await ws.recv())["messages"]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        while True:
                            out[name] += orjson.loads(await ws.recv())["messages"]
                await ws.close()
            return out

        got = asyncio.run(live())
        # The LV token's own ack of the LV-ALL alert (above) may reach the feed only
        # now, when the API's reader is behind: that one belongs to LV.
        seen = [
            (m["type"], m["payload"].get("section_id"))
            for m in got["lv"]
            if m["type"] != "heartbeat"
            and not (
                m["type"] == "ack" and m["payload"]["alert_id"] == "official-vs-field.LV-ALL.1"
            )
        ]
        assert seen == [("section_state", "LV-KRA")], got["lv"]
        every_types = {(m["type"], m["payload"].get("section_id")) for m in got["every"]}
        for wanted in (("section_state", "PL-KUZ"), ("alert", "PL-KUZ"), ("ack", None)):
            assert wanted in every_types, (wanted, every_types)

        # SSE: the snapshot holds LV only.
        req = urllib.request.Request(
            api.url + "/sse/alerts", headers={"Authorization": f"Bearer {lv}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            head = b""
            while b"\n\n" not in head.split(b"event: snapshot", 1)[-1]:
                head += resp.read1(65536)
        data = head.split(b"event: snapshot\ndata: ", 1)[1].split(b"\n\n", 1)[0]
        snap = orjson.loads(data)
        assert _countries_in(snap["payload"]) == {"LV"}, snap
    finally:
        api.stop()


def test_a_country_scoped_field_unit_posts_only_for_its_country(kafka: str, tmp_path: Path) -> None:
    settings, common, _ = open_door(kafka, tmp_path)
    tokens_file = tmp_path / "scoped-tokens.json"
    unit = create_token(tokens_file, ["ingest:field", "ingest:report"], "LV unit", countries=["LV"])
    settings = settings.model_copy(update={"tokens_file": tokens_file})
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        pl = field_event(section_id="PL-KUZ")
        nowhere = field_event(section_id="PL-NOPE")
        refused = client.post("/v1/field-events", json=pl, headers=bearer(unit))
        assert refused.status_code == 422, refused.text
        [problem] = refused.json()["errors"]
        assert problem["field"] == "section_id"
        assert problem["reason"] == "section 'PL-KUZ' is outside this token's countries (LV)"
        # The same answer for a section that does not exist: no hint either way.
        ghost = client.post("/v1/field-events", json=nowhere, headers=bearer(unit))
        assert ghost.json()["errors"][0]["reason"] == problem["reason"].replace("KUZ", "NOPE")
        lv = field_event()
        mixed = client.post("/v1/field-events", json=[lv, pl], headers=bearer(unit))
        assert mixed.status_code == 202, mixed.text
        assert mixed.json()["accepted"] == [lv["event_id"]]
        assert [r["index"] for r in mixed.json()["rejected"]] == [1]
        report = client.post(
            "/v1/reports", json=report_event(country="PL", figures=[]), headers=bearer(unit)
        )
        assert report.status_code == 422
        assert report.json()["errors"][0]["field"] == "country"
        figure = client.post(
            "/v1/reports",
            json=report_event(
                figures=[{"kind": "crossing_attempt", "count": 3, "section_id": "PL-KUZ"}]
            ),
            headers=bearer(unit),
        )
        assert figure.status_code == 422
        assert figure.json()["errors"][0]["field"] == "figures.0.section_id"
        assert (
            client.post("/v1/reports", json=report_event(), headers=bearer(unit)).status_code == 202
        )
    in_kafka = event_ids_in(read_topic(common, common.topic_prefix + "field-events", 1))
    assert set(in_kafka) == {lv["event_id"]}
