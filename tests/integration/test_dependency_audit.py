"""`make audit` (scripts/audit.py): a known-vulnerable pin fails it; with no
vulnerability service reachable it says so at once instead of hanging.

The vulnerable-pin test serves one real advisory (GHSA-x84v-xcm2-53pg,
CVE-2018-18074, requests < 2.20.0) from an OSV-API endpoint on 127.0.0.1, as an
internal OSV mirror would (``BW_AUDIT_OSV_URL``): api.osv.dev is not reachable
from this machine. pip-audit itself runs for real against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "audit.py"

ADVISORY = {
    "schema_version": "1.4.0",
    "id": "GHSA-x84v-xcm2-53pg",
    "aliases": ["CVE-2018-18074"],
    "summary": "Insufficiently Protected Credentials in Requests",
    "published": "2018-10-29T19:06:56Z",
    "affected": [
        {
            "package": {"name": "requests", "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
        }
    ],
}


class _Osv(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["content-length"])))
        package, version = query["package"]["name"], query.get("version", "")
        vulnerable = package == "requests" and tuple(map(int, version.split(".")[:2])) < (2, 20)
        body = json.dumps({"vulns": [ADVISORY]} if vulnerable else {}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osv_mirror() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Osv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _audit(
    tmp_path: Path, pins: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(pins, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "-r", str(requirements), *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_known_vulnerable_pin_fails_the_audit(tmp_path: Path, osv_mirror: str) -> None:
    env = {"BW_AUDIT_OSV_URL": osv_mirror}

    bad = _audit(tmp_path, "requests==2.19.0\n", env)
    good = _audit(tmp_path, "requests==2.32.3\n", env)

    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "CVE-2018-18074" in bad.stdout and "2.20.0" in bad.stdout
    assert "Found 1 known vulnerability" in bad.stderr
    assert good.returncode == 0, good.stdout + good.stderr
    assert "no known vulnerabilities" in good.stdout


def test_without_a_reachable_service_it_says_so_at_once(tmp_path: Path) -> None:
    # Closed local ports: nothing answers.
    env = {"BW_AUDIT_OSV_URL": "http://127.0.0.1:9", "BW_AUDIT_PYPI_URL": "http://127.0.0.1:9"}
    t0 = time.monotonic()
    lenient = _audit(tmp_path, "requests==2.19.0\n", env)
    strict = _audit(tmp_path, "requests==2.19.0\n", env, "--strict")
    took = time.monotonic() - t0

    assert lenient.returncode == 0, lenient.stdout
    assert "NOT AUDITED: no vulnerability service is reachable" in lenient.stdout
    assert "127.0.0.1:9" in lenient.stdout
    assert strict.returncode == 3
    assert took < 60
