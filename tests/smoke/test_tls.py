"""Smoke: `borderwatch up --tls` serves https and wss with a local CA it made, says
how to trust it, and refuses plain HTTP on those ports."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.smoke.test_up import Up

pytestmark = pytest.mark.smoke


def test_up_tls_serves_https_and_wss_with_a_local_ca(tmp_path: Path) -> None:
    data_dir = tmp_path / "bw-data"
    up = Up(data_dir, "--tls", "--demo")
    try:
        api = up.wait_for(r"API\s+(https://127\.0\.0\.1:(\d+))/api/v1/sections", 120)
        ingest = up.wait_for(r"Ingest\s+POST (https://127\.0\.0\.1:(\d+))/v1/field-events", 5)
        up.wait_for(r"Live feed\s+wss://127\.0\.0\.1:\d+/ws/feed", 5)
        ca = Path(up.wait_for(r"local CA (\S+)", 5).group(1))
        assert up.wait_for(r"curl --cacert (\S+)", 5).group(1) == str(ca)
        assert ca == data_dir / "tls" / "ca.pem"
        assert (data_dir / "tls" / "ca-key.pem").stat().st_mode & 0o077 == 0
        token = up.wait_for(r"Authorization: Bearer (bw_\S+)", 5).group(1)
        context = ssl.create_default_context(cafile=str(ca))

        req = urllib.request.Request(
            api.group(1) + "/api/v1/sections", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            assert resp.status == 200
            assert "strict-transport-security" in resp.headers
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(api.group(1) + "/api/v1/sections", timeout=5, context=context)
        assert refused.value.code == 401

        # The demo posts over https too (trusting the CA): counts arrive.
        def counts() -> int:
            with urllib.request.urlopen(req, timeout=5, context=context) as resp:
                return sum(sum(s["counts_24h"].values()) for s in json.loads(resp.read()))

        deadline = time.monotonic() + 60
        while counts() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert counts() > 0, up.output

        async def wss() -> str:
            async with websockets.connect(
                f"wss://127.0.0.1:{api.group(2)}/ws/feed",
                ssl=context,
                subprotocols=[websockets.Subprotocol(token)],
            ) as ws:
                return str(re.search(r'"type":"(\w+)"', str(await ws.recv())).group(1))  # type: ignore[union-attr]

        assert asyncio.run(wss()) == "batch"

        for port in (api.group(2), ingest.group(2)):
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                try:
                    answer = sock.recv(100)
                except ConnectionResetError:
                    answer = b""
            assert not answer.startswith(b"HTTP/"), answer
    finally:
        up.stop(signal.SIGTERM)
        up.kill_everything()
    assert up.process.returncode == 0, up.output
