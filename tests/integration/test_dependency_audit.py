"""`make audit` (scripts/audit.py) audits the lock file: a known-vulnerable pin in
it fails the audit; with no vulnerability service reachable it says so at once
instead of hanging.

The tests serve one real advisory (GHSA-x84v-xcm2-53pg, CVE-2018-18074,
requests < 2.20.0) from an OSV-API endpoint on 127.0.0.1, as an internal OSV
mirror would (``BW_AUDIT_OSV_URL``): api.osv.dev is not reachable from this
machine. pip-audit itself runs for real against it, over the project's lock
file (``requirements/dev.txt``) or a copy of it with one pin changed.
"""

from __future__ import annotations

import json
import os
import re
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
LOCK = REPO / "requirements" / "dev.txt"
# requests 2.19.0 as a lock file pins it (sha256 of requests-2.19.0-py2.py3-none-any.whl).
VULNERABLE_PIN = (
    "requests==2.19.0 \\\n"
    "    --hash=sha256:421cfc8d9dde7d6aff68196420afd86b88c65d77d8da9cf83f4ecad785d7b9d6\n"
)
# One pinned package of a pip-compile lock file: the pin and its --hash lines.
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\\n(?:\s+--hash=\S+(?: \\)?\n)+", re.M)

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
    queried: set[tuple[str, str]]

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["content-length"])))
        package, version = query["package"]["name"], query.get("version", "")
        self.server.queried.add((package.lower(), version))  # type: ignore[attr-defined]
        vulnerable = package == "requests" and tuple(map(int, version.split(".")[:2])) < (2, 20)
        body = json.dumps({"vulns": [ADVISORY]} if vulnerable else {}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Mirror(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Osv)
        self.queried: set[tuple[str, str]] = set()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def osv_mirror() -> Iterator[_Mirror]:
    server = _Mirror()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _locked_pins(text: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) for m in _PIN.finditer(text)}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _audit(
    tmp_path: Path, pins: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(pins, encoding="utf-8")
    return _run(env, "-r", str(requirements), *args)


def test_make_audit_checks_every_pin_of_the_lock_file(osv_mirror: _Mirror) -> None:
    """No -r: the lock file, each pin at its locked version, and nothing else."""
    locked = _locked_pins(LOCK.read_text(encoding="utf-8"))
    assert len(locked) > 50 and "fastapi" in locked and "pip-audit" in locked

    done = _run({"BW_AUDIT_OSV_URL": osv_mirror.url})

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"-r {LOCK} --no-deps" in done.stdout
    assert "no known vulnerabilities" in done.stdout
    # The script's reachability probe asks for pip 0 first.
    queried = {(name.replace("_", "-"), v) for name, v in osv_mirror.queried} - {("pip", "0")}
    expected = {(name.replace("_", "-"), v) for name, v in locked.items()}
    assert queried == expected, (sorted(expected - queried), sorted(queried - expected))


def test_a_known_vulnerable_pin_in_the_lock_file_fails_the_audit(
    tmp_path: Path, osv_mirror: _Mirror
) -> None:
    env = {"BW_AUDIT_OSV_URL": osv_mirror.url}
    lock = LOCK.read_text(encoding="utf-8")
    [requests] = [m for m in _PIN.finditer(lock) if m.group(1).lower() == "requests"]
    # The lock file as `make lock` writes it, with requests pinned below the fix.
    vulnerable_lock = lock[: requests.start()] + VULNERABLE_PIN + lock[requests.end() :]
    assert _locked_pins(vulnerable_lock)["requests"] == "2.19.0"

    bad = _audit(tmp_path, vulnerable_lock, env)
    good = _audit(tmp_path, lock, env)

    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "CVE-2018-18074" in bad.stdout and "2.20.0" in bad.stdout
    assert "Found 1 known vulnerability in 1 package" in bad.stderr
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
