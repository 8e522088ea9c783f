"""Smoke: after a full run of `borderwatch up --demo` with token changes, refused
attempts, dead-letter reads, acks and feeds, no secret is in any log or topic.

The tokens' secrets (and their hashes) may be only where they belong: the local
token file, and the hashes in tokens.json. Everything else under the data
directory (every service's log, the broker's log and its topic segments, the
aggregator's tables) and every record of every topic read through Kafka is
searched for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets
from aiokafka.admin import AIOKafkaAdminClient

from services.common.kafka import make_consumer
from services.common.settings import CommonSettings
from tests.smoke.test_up import REPO, Up, _borderwatch

pytestmark = pytest.mark.smoke

ALLOWED = {"local-token", "tokens.json"}  # the local token itself; the hashes


def _call(url: str, token: str | None, body: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _token_cmd(data_dir: Path, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env["BW_TOKENS_FILE"] = str(data_dir / "tokens.json")
    done = subprocess.run(
        [*_borderwatch(), "token", *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "audit record kept" not in done.stderr, done.stderr  # sent to the running up
    return done.stdout.strip()


async def _all_records(bootstrap: str) -> bytes:
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(await admin.list_topics())
    finally:
        await admin.close()
    consumer = make_consumer(settings, *topics)
    await consumer.start()
    chunks: list[bytes] = []
    try:
        quiet = 0
        while quiet < 3:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=10)
            quiet = 0 if batch else quiet + 1
            for records in batch.values():
                for r in records:
                    chunks += [r.key or b"", r.value or b""]
                    chunks += [v for _, v in (r.headers or ())]
    finally:
        await consumer.stop()
    return b"\n".join(chunks)


def test_no_secret_in_any_log_or_topic_after_a_full_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "bw-data"
    up = Up(data_dir, "--demo")
    try:
        api = up.wait_for(r"API\s+(https?://127\.0\.0\.1:\d+)/api/v1/sections", 120).group(1)
        api = api.rsplit("/api/v1/sections", 1)[0]
        ingest = up.wait_for(r"Ingest\s+POST (https?://127\.0\.0\.1:\d+)/v1/field-events", 5)
        ingest_url = ingest.group(1)
        bootstrap = up.wait_for(r"Kafka\s+(127\.0\.0\.1:\d+)", 5).group(1)
        local = up.wait_for(r"Authorization: Bearer (bw_\S+)", 5).group(1)

        # Token lifecycle through the command, with the system running.
        reader = _token_cmd(data_dir, "create", "--scopes", "read,ack", "--label", "desk")
        reader_id = reader.split("_")[1]
        rotated = _token_cmd(data_dir, "rotate", reader_id)
        temp = _token_cmd(data_dir, "create", "--scopes", "read", "--expires", "1h")
        _token_cmd(data_dir, "revoke", temp.split("_")[1])
        listing = _token_cmd(data_dir, "list")
        assert reader_id in listing

        # Use and misuse every kind of credential on every kind of door.
        for token in (local, rotated, reader, temp, "bw_00000000_made-up-secret", None):
            _call(api + "/api/v1/sections", token)
            _call(api + f"/api/v1/sections?token={token}", None)
            _call(ingest_url + "/v1/dead-letter?limit=3", token)
        bad = json.dumps([{"event_id": "nope", "kind": "crossing_attempt"}]).encode()
        assert _call(ingest_url + "/v1/field-events", local, bad) in (202, 422)
        assert _call(ingest_url + "/v1/dead-letter?limit=3", local) == 200
        # A token pasted into an ack comment is refused, not published.
        ack = json.dumps({"by": "duty", "comment": f"token {local} pasted by mistake?"})
        assert _call(api + "/api/v1/alerts/none.LV-KRA.1/ack", rotated, ack.encode()) == 422

        async def feeds() -> None:
            ws_url = api.replace("http", "ws", 1)
            for token in (rotated, reader, temp):
                try:
                    async with websockets.connect(f"{ws_url}/ws/feed?token={token}") as ws:
                        await asyncio.wait_for(ws.recv(), timeout=5)
                except (websockets.ConnectionClosed, TimeoutError):
                    pass

        asyncio.run(feeds())
        topics = asyncio.run(_all_records(bootstrap))
    finally:
        up.stop(signal.SIGTERM)
        up.kill_everything()

    secrets = {}
    for name, token in (("local", local), ("reader", reader), ("rotated", rotated), ("temp", temp)):
        secret = token.split("_", 2)[2]
        secrets[name + " secret"] = secret.encode()
        secrets[name + " hash"] = hashlib.sha256(token.encode()).hexdigest().encode()
    found = []
    searched = 0
    for path in data_dir.rglob("*"):
        if not path.is_file() or path.name in ALLOWED:
            continue
        content = path.read_bytes()
        searched += 1
        found += [f"{what} in {path}" for what, s in secrets.items() if s in content]
    found += [f"{what} in a Kafka record" for what, s in secrets.items() if s in topics]
    assert found == [], found
    # The search did look at the logs and the broker's topic data.
    logs = {p.name for p in (data_dir / "logs").iterdir()}
    assert {"ingest.log", "api.log", "aggregator.log"} <= logs
    assert b"token.rotate" in topics and b"dead_letter.read" in topics
    assert b"auth.refused" in topics
    assert searched > 20
