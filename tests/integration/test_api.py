"""The live API as its users see it: replicas, acks, resumable feeds, slow clients, auth.

API replicas run as real uvicorn processes on 127.0.0.1, reading the real
embedded broker; feed clients are real WebSocket/HTTP clients over sockets.
Section states and alert transitions are written to their topics directly,
as the aggregator would, so each test controls exactly what flows.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import websockets

from schemas.models import KINDS
from services.api.settings import UVICORN_FLAGS
from services.common.auth import create_token
from services.common.kafka import make_producer
from services.runtime.broker import free_port, tail
from tests.integration.conftest import REPO, Deployment, wait_until

pytestmark = pytest.mark.integration


class ApiProcess:
    def __init__(self, dep: Deployment, tokens: Path, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.log_path = workdir / f"api-{self.port}.log"
        full = dep.env()
        full.update({"BW_TOKENS_FILE": str(tokens), "BW_AUTH_ENABLED": "true", **env})
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "services.api.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    *UVICORN_FLAGS,
                ],
                env=full,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"API exited\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_until(ready, 60, "API ready")

    def request(self, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "tokens.json"
    return {
        "path": str(path),
        "read": create_token(path, ["read"]),
        "ack": create_token(path, ["read", "ack"]),
        "ingest": create_token(path, ["ingest:field"]),
    }


@pytest.fixture
def start_api(
    deployment: Deployment, tokens: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(**env: str) -> ApiProcess:
        api = ApiProcess(deployment, Path(tokens["path"]), tmp_path, **env)
        started.append(api)
        api.wait_ready()
        return api

    try:
        yield start
    finally:
        for api in started:
            api.stop()


def _state(sid: str, version: int, crossings: int = 0, level: str = "low") -> dict[str, Any]:
    counts = dict.fromkeys(KINDS, 0) | {"crossing_attempt": crossings}
    now = datetime.now(UTC)
    return {
        "schema_version": 1,
        "section_id": sid,
        "name": sid,
        "country": sid[:2],
        "level": level,
        "counts_1h": counts,
        "counts_24h": counts,
        "counts_7d": counts,
        "hourly": [{"start": now.isoformat(), "counts": counts} for _ in range(24)],
        "last_event_at": now.isoformat(),
        "firing_alerts": [],
        "version": version,
        "updated_at": now.isoformat(),
    }


def _alert(sid: str, seq: int, status: str, severity: str = "high") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "schema_version": 1,
        "alert_id": f"crossings-24h.{sid}.1",
        "seq": seq,
        "rule": "crossings-24h",
        "section_id": sid,
        "country": sid[:2],
        "status": status,
        "severity": severity,
        "value": 120,
        "threshold": 100,
        "window": "24h",
        "started_at": now,
        "updated_at": now,
        "resolved_at": now if status == "resolved" else None,
        "summary": f"{sid}: 120 crossing attempts in 24 h ≥ {severity} threshold 100",
    }


def produce(dep: Deployment, states: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
    async def send() -> None:
        producer = make_producer(dep.settings())
        await producer.start()
        try:
            futures = [
                await producer.send(
                    dep.prefix + "section-state", orjson.dumps(s), key=s["section_id"].encode()
                )
                for s in states
            ] + [
                await producer.send(
                    dep.prefix + "alerts", orjson.dumps(a), key=a["alert_id"].encode()
                )
                for a in alerts
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_two_replicas_serve_the_same_picture_and_share_acks(
    deployment: Deployment, start_api: Callable[..., ApiProcess], tokens: dict[str, str]
) -> None:
    produce(
        deployment,
        [_state("LV-KRA", 1, 120, "high"), _state("PL-KUZ", 1, 30), _state("LT-MED", 2, 5)],
        [
            _alert("LV-KRA", 1, "firing"),
            _alert("PL-KUZ", 1, "firing"),
            _alert("PL-KUZ", 2, "resolved"),
        ],
    )
    one, two = start_api(), start_api()
    read = tokens["read"]
    wait_until(
        lambda: one.request("/api/v1/state", read) == two.request("/api/v1/state", read),
        10,
        "same state",
    )
    status, picture = one.request("/api/v1/state", read)
    assert status == 200
    assert {c["country"]: c["counts_24h"]["crossing_attempt"] for c in picture["countries"]} == {
        "LT": 5,
        "LV": 120,
        "PL": 30,
    }
    assert [a["alert_id"] for a in picture["firing_alerts"]] == ["crossings-24h.LV-KRA.1"]

    # Acks: scope, unknown, resolved, then one replica's ack visible on the other.
    body = {"by": "LV duty officer", "comment": "patrol sent"}
    assert one.request("/api/v1/alerts/crossings-24h.LV-KRA.1/ack", read, body)[0] == 403
    assert one.request("/api/v1/alerts/nope.LV-KRA.1/ack", tokens["ack"], body)[0] == 404
    status, err = one.request("/api/v1/alerts/crossings-24h.PL-KUZ.1/ack", tokens["ack"], body)
    assert status == 409 and "resolved" in err["detail"]
    status, ack = one.request("/api/v1/alerts/crossings-24h.LV-KRA.1/ack", tokens["ack"], body)
    assert status == 202, ack
    posted = time.monotonic()

    def acked_on_two() -> bool:
        _, detail = two.request("/api/v1/alerts/crossings-24h.LV-KRA.1", read)
        return bool(detail["acks"]) and detail["current"]["acked"]

    wait_until(acked_on_two, 1.0, "the ack on the other replica within 1 s")
    print(f"\n[figure] ack visible on the other replica after {time.monotonic() - posted:.3f}s")
    _, detail = two.request("/api/v1/alerts/crossings-24h.LV-KRA.1", read)
    assert detail["acks"][0]["by"] == "LV duty officer"
    assert detail["acks"][0]["seq"] == 1
    assert "bw_" not in json.dumps(detail["acks"])  # the token id only, never the token


class FeedReader:
    """Feed messages out of a WebSocket's batch frames, in order; counts the frames."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pending: deque[dict[str, Any]] = deque()
        self.frames = 0

    async def collect(self, n: int, timeout: float) -> list[dict[str, Any]]:
        out = []
        while len(out) < n:
            if not self.pending:
                frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout=timeout))
                assert frame["type"] == "batch" and frame["messages"], frame
                self.frames += 1
                self.pending.extend(frame["messages"])
            message = self.pending.popleft()
            if message["type"] != "heartbeat":
                out.append(message)
        return out


def test_a_client_that_reconnects_with_its_cursor_gets_exactly_what_it_missed(
    deployment: Deployment, start_api: Callable[..., ApiProcess], tokens: dict[str, str]
) -> None:
    produce(deployment, [_state("LV-KRA", 1)], [])
    api = start_api()
    url = f"{api.ws}/ws/feed?token={tokens['read']}"

    async def scenario() -> None:
        async with (
            websockets.connect(url) as ws,
            websockets.connect(f"{url}&hourly=true") as ws_hourly,
        ):
            feed, feed_hourly = FeedReader(ws), FeedReader(ws_hourly)
            snapshot = (await feed.collect(1, 10))[0]
            assert snapshot["type"] == "snapshot"
            assert (await feed_hourly.collect(1, 10))[0]["type"] == "snapshot"
            await asyncio.to_thread(produce, deployment, [_state("LV-KRA", 2)], [])
            live = await feed.collect(1, 10)
            cursor = live[0]["cursor"]
            # The 24 hourly buckets only for the client that asked for them.
            assert "hourly" not in live[0]["payload"]
            live_hourly = (await feed_hourly.collect(1, 10))[0]
            assert len(live_hourly["payload"]["hourly"]) == 24
            assert live_hourly["cursor"] == cursor
        async with websockets.connect(f"{url}&hourly=maybe") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        # Offline: 500 section updates and 3 alert transitions happen.
        states = [
            _state(sid, v)
            for v in range(3, 103)
            for sid in ("LV-KRA", "LV-SIL", "LT-MED", "PL-KUZ", "PL-BIA")
        ]
        alerts = [
            _alert("LV-KRA", 1, "firing", "medium"),
            _alert("LV-KRA", 2, "firing", "high"),
            _alert("LV-KRA", 3, "resolved"),
        ]
        await asyncio.to_thread(produce, deployment, states, alerts)

        def applied() -> bool:
            status, alert = api.request("/api/v1/alerts/crossings-24h.LV-KRA.1", tokens["read"])
            sections = api.request("/api/v1/sections", tokens["read"])[1]
            versions = {s["section_id"]: s["version"] for s in sections}
            return (
                status == 200
                and len(alert["transitions"]) == 3
                and [versions[sid] for sid in ("LV-KRA", "PL-BIA")] == [102, 102]
            )

        # The API has all of it in its log: the client gets it as one backlog.
        await asyncio.to_thread(wait_until, applied, 15, "the API to apply the offline changes")

        def caught_up() -> dict[str, float]:
            """The lag gauges once they read nothing behind, on every topic the API reads."""
            with urllib.request.urlopen(api.url + "/metrics", timeout=5) as resp:
                lines = resp.read().decode().splitlines()
            gauges = {
                line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in lines
                if line.startswith(("bw_api_view_lag_records{", "bw_api_view_lag_seconds "))
            }
            # 9 topics (state, hours, alerts, acks, field events, reports, analyses,
            # assessments, audit) + the seconds.
            return gauges if len(gauges) == 10 and not any(gauges.values()) else {}

        # Operators see how far the view is behind Kafka: nothing, now.
        await asyncio.to_thread(wait_until, caught_up, 10, "lag gauges reading 0")
        # The client library's default 1 MiB frame limit holds: big backlogs are split.
        async with websockets.connect(f"{url}&cursor={cursor}") as ws:
            feed = FeedReader(ws)
            missed = await feed.collect(503, 15)
            # Nothing more: no duplicates behind them.
            with pytest.raises(TimeoutError):
                extra = await feed.collect(1, 1.5)
                raise AssertionError(f"unexpected extra message {extra}")
        # The backlog came batched: 503 messages of ~3.6 KB in frames of about 64 KiB.
        assert feed.frames <= 40, feed.frames
        got_states = [
            (m["payload"]["section_id"], m["payload"]["version"])
            for m in missed
            if m["type"] == "section_state"
        ]
        got_alerts = [m["payload"]["seq"] for m in missed if m["type"] == "alert"]
        assert len(got_states) == 500 and len(set(got_states)) == 500
        assert got_alerts == [1, 2, 3]
        for sid in ("LV-KRA", "LV-SIL", "LT-MED", "PL-KUZ", "PL-BIA"):
            versions = [v for s, v in got_states if s == sid]
            assert versions == list(range(3, 103)), sid  # in order per section
        # A cursor beyond the replay horizon gets one resync snapshot.
        async with websockets.connect(
            f"{url}&cursor=s0-0_s1-0_s2-0_s3-0_s4-0_s5-0_a0-0_a1-0_a2-0"
        ) as ws:
            first = (await FeedReader(ws).collect(1, 10))[0]
            assert first["type"] in {"resync", "section_state", "alert"}

    asyncio.run(scenario())


def test_a_slow_client_never_delays_the_others_and_memory_stays_bounded(
    deployment: Deployment, start_api: Callable[..., ApiProcess], tokens: dict[str, str]
) -> None:
    api = start_api(BW_FEED_QUEUE_SIZE="1000", BW_FEED_REPLAY_SIZE="2000")
    url = f"{api.ws}/ws/feed?token={tokens['read']}"
    total = 10_000
    sections = ["LV-KRA", "LV-SIL", "LT-MED", "PL-KUZ", "PL-BIA"]
    rss_before = api.rss()

    async def normal(received: list[int]) -> None:
        # A healthy client reads its socket as fast as it can (a big client-side
        # queue); it only counts, so the test process keeps up with the server.
        async with websockets.connect(url, max_size=None, max_queue=8192) as ws:
            await FeedReader(ws).collect(1, 10)  # snapshot, alone in its frame
            while received[0] < total:
                frame = await asyncio.wait_for(ws.recv(), timeout=30)
                assert frame.startswith('{"type":"batch","messages":[{'), frame[:80]
                received[0] += frame.count('{"type":"section_state","payload":')

    def slow_client() -> socket.socket:
        """A client that upgrades to WebSocket and then never reads (a tiny buffer)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", api.port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /ws/feed?token={tokens['read']} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        return sock

    def read_to_close(sock: socket.socket) -> bytes:
        sock.settimeout(20)
        data = b""
        try:
            while chunk := sock.recv(1 << 16):
                data += chunk
        except TimeoutError:
            pass
        return data

    async def scenario() -> list[list[int]]:
        counters = [[0] for _ in range(5)]
        readers = [asyncio.create_task(normal(c)) for c in counters]
        await asyncio.sleep(1.0)
        states = [_state(sections[i % 5], i // 5 + 1) for i in range(total)]
        await asyncio.to_thread(produce, deployment, states, [])
        await asyncio.wait_for(asyncio.gather(*readers), timeout=90)
        return counters

    slow = slow_client()
    counters = asyncio.run(scenario())
    tail_bytes = read_to_close(slow)
    slow.close()
    # The slow client was closed with the documented code 4008 (0x0FA8).
    close_code = 4008 if b"\x88" in tail_bytes and b"\x0f\xa8too slow" in tail_bytes else None
    assert [c[0] for c in counters] == [total] * 5
    assert close_code == 4008
    grown = (api.rss() - rss_before) / 2**20
    print(f"\n[figure] API RSS grew {grown:.0f} MiB over {total} messages to 6 clients")
    assert grown < 150, f"API memory grew {grown:.0f} MiB"
    with urllib.request.urlopen(api.url + "/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert "bw_api_feed_clients_dropped_total 1.0" in metrics


def test_sse_alerts_resume_with_last_event_id(
    deployment: Deployment, start_api: Callable[..., ApiProcess], tokens: dict[str, str]
) -> None:
    produce(deployment, [], [_alert("LV-KRA", 1, "firing", "medium")])
    api = start_api()

    def read_events(headers: dict[str, str], n: int) -> list[dict[str, str]]:
        req = urllib.request.Request(
            f"{api.url}/sse/alerts?token={tokens['read']}", headers=headers
        )
        events: list[dict[str, str]] = []
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            current: dict[str, str] = {}
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in current:
                        events.append(current)
                        if len(events) >= n:
                            return events
                    current = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    current[key] = value
        return events

    first = read_events({}, 1)
    assert first[0]["event"] == "snapshot"
    last_id = first[0]["id"]
    produce(
        deployment, [], [_alert("LV-KRA", 2, "firing", "high"), _alert("LV-KRA", 3, "resolved")]
    )
    time.sleep(1.0)
    missed = read_events({"Last-Event-ID": last_id}, 2)
    assert [(e["event"], json.loads(e["data"])["payload"]["seq"]) for e in missed] == [
        ("alert", 2),
        ("alert", 3),
    ]
    assert missed[-1]["id"] != last_id


ROUTES = [
    ("GET", "/api/v1/state", "read"),
    ("GET", "/api/v1/countries", "read"),
    ("GET", "/api/v1/sections", "read"),
    ("GET", "/api/v1/sections/LV-KRA", "read"),
    ("GET", "/api/v1/alerts", "read"),
    ("GET", "/api/v1/alerts/crossings-24h.LV-KRA.1", "read"),
    ("GET", "/api/v1/events/recent", "read"),
    ("GET", "/api/v1/reports/recent", "read"),
    ("POST", "/api/v1/alerts/crossings-24h.LV-KRA.1/ack", "ack"),
    ("GET", "/sse/alerts", "read"),
]


def test_auth_matrix_over_every_route_and_feed(
    deployment: Deployment, start_api: Callable[..., ApiProcess], tokens: dict[str, str]
) -> None:
    produce(deployment, [_state("LV-KRA", 1)], [_alert("LV-KRA", 1, "firing")])
    api = start_api()
    wrong = "bw_deadbeef_not-a-real-token"
    for method, path, scope in ROUTES:
        body = {"by": "duty officer"} if method == "POST" else None
        without = tokens["ingest"]  # a valid token without the scope
        right = tokens["ack"] if scope == "ack" else tokens["read"]
        for token, want in ((None, 401), (wrong, 401), (without, 403)):
            status, _ = api.request(path, token, body)
            assert status == want, (method, path, token, status)
        if path.startswith("/sse/"):
            req = urllib.request.Request(
                api.url + path, headers={"Authorization": f"Bearer {right}"}
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
        else:
            status, _ = api.request(path, right, body)
            assert status in (200, 202), (method, path, status)

    async def ws_codes() -> dict[str, int | None]:
        out = {}
        for feed in ("/ws/feed", "/ws/alerts"):
            for label, query in (
                ("none", ""),
                ("wrong", f"?token={wrong}"),
                ("scope", f"?token={tokens['ingest']}"),
            ):
                try:
                    async with websockets.connect(api.ws + feed + query) as ws:
                        await asyncio.wait_for(ws.recv(), timeout=5)
                        out[feed + label] = 1000
                except websockets.ConnectionClosed as closed:
                    out[feed + label] = closed.rcvd.code if closed.rcvd else None
                except websockets.InvalidStatus as invalid:
                    out[feed + label] = invalid.response.status_code
            async with websockets.connect(
                api.ws + feed, additional_headers={"Authorization": f"Bearer {tokens['read']}"}
            ) as ws:
                out[feed + "ok"] = (await FeedReader(ws).collect(1, 5))[0]["type"]
            async with websockets.connect(api.ws + feed, subprotocols=[tokens["read"]]) as ws:
                out[feed + "proto"] = (await FeedReader(ws).collect(1, 5))[0]["type"]
        return out

    codes = asyncio.run(ws_codes())
    for feed in ("/ws/feed", "/ws/alerts"):
        assert codes[feed + "none"] == 4401, codes
        assert codes[feed + "wrong"] == 4401, codes
        assert codes[feed + "scope"] == 4403, codes
        assert codes[feed + "ok"] == "snapshot"
        assert codes[feed + "proto"] == "snapshot"
    # Health and metrics stay open for probes and Prometheus.
    assert api.request("/healthz", None)[0] == 200


def _hour_states(sid: str, base: datetime, hours: range) -> list[dict[str, Any]]:
    """States as the aggregator publishes them once an hour: each with the 24 hourly
    buckets up to its own hour. Bucket ``j`` (hours after ``base``) counts ``j + 1``
    crossing attempts once its hour is over; in the state of its own hour it is still
    filling and counts ``j``, so a later state's copy must win."""
    states = []
    for i in hours:
        hourly = [
            {
                "start": (base + timedelta(hours=j)).isoformat(),
                "counts": dict.fromkeys(KINDS, 0) | {"crossing_attempt": j if j == i else j + 1},
            }
            for j in range(i - 23, i + 1)
        ]
        state = _state(sid, i + 1)
        state["hourly"] = hourly
        state["updated_at"] = (base + timedelta(hours=i, minutes=30)).isoformat()
        states.append(state)
    return states


def test_section_detail_serves_up_to_168_hourly_buckets_rebuilt_from_the_states(
    deployment: Deployment, start_api: Callable[..., ApiProcess], tokens: dict[str, str]
) -> None:
    read = tokens["read"]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    base = now - timedelta(hours=59)
    # 36 hours of states for LV-SIL (its buckets reach back to base - 23 h), written
    # before the API starts: the API finds the history by reading the topic.
    produce(deployment, _hour_states("LV-SIL", base, range(0, 36)), [])
    api = start_api()

    def series(hours: int | None) -> list[dict[str, Any]]:
        query = "" if hours is None else f"?hours={hours}"
        status, body = api.request(f"/api/v1/sections/LV-SIL{query}", read)
        assert status == 200, body
        return list(body["hourly"])

    def expect(first: int, last: int) -> list[tuple[str, int]]:
        return [
            ((base + timedelta(hours=j)).isoformat(), j if j == last else j + 1)
            for j in range(first, last + 1)
        ]

    def pairs(points: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return [
            (datetime.fromisoformat(p["start"]).isoformat(), p["counts"]["crossing_attempt"])
            for p in points
        ]

    wait_until(lambda: len(series(168)) == 59, 10, "59 hourly buckets in the view")
    # Default: the newest state's 24 buckets, as before.
    assert pairs(series(None)) == expect(35 - 23, 35)
    # 168 asked: every bucket the states carried (59 hours), oldest first, the newest
    # copy of each (the hour still filling in an older state is not what is served).
    assert pairs(series(168)) == expect(-23, 35)
    assert pairs(series(30)) == expect(35 - 29, 35)
    _, body = api.request("/api/v1/sections/LV-SIL?hours=168", read)
    assert body["history_since"] == (base - timedelta(hours=23)).isoformat()

    # Live: the next hours arrive while the API runs; the window slides past 168 h.
    produce(deployment, _hour_states("LV-SIL", base, range(36, 150)), [])
    wait_until(lambda: series(24)[-1]["counts"]["crossing_attempt"] == 149, 10, "hour 149")
    assert pairs(series(168)) == expect(149 - 167, 149)
    assert pairs(series(1)) == expect(149, 149)

    # A restarted API rebuilds the same series from the topic.
    api.stop()
    api = start_api()
    wait_until(lambda: len(series(168)) == 168, 10, "168 buckets after a restart")
    assert pairs(series(168)) == expect(149 - 167, 149)

    # A section without states has an empty series; bad values name the parameter.
    status, body = api.request("/api/v1/sections/LV-PIE?hours=168", read)
    assert status == 200 and body["hourly"] == [] and body["history_since"] is None
    for bad in ("0", "1000", "169", "-1", "a week"):
        status, body = api.request(f"/api/v1/sections/LV-SIL?hours={bad.replace(' ', '%20')}", read)
        assert status == 422, (bad, body)
        assert [e["field"] for e in body["errors"]] == ["query.hours"], body
    assert api.request("/api/v1/sections/XX-NOPE?hours=168", read)[0] == 404
