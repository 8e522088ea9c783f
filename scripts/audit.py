"""Dependency audit (``make audit``): pip-audit over the lock file's pins, npm audit
over vendored front-end packages.

    python scripts/audit.py [-r requirements/dev.txt] [--installed] [--strict]

Without ``-r`` it audits the lock file ``requirements/dev.txt`` (every runtime and
dev pin; ``requirements/runtime.txt``, what the image installs, is a subset with
the same versions), as pinned and hashed there, with no resolution of its own
(``--no-deps --disable-pip``): what ``make install`` and the Dockerfile install,
not whatever this environment happens to hold. ``--installed`` audits this
environment instead (``pip freeze --exclude-editable``, written to
``.tools/audit/requirements.txt``). It first checks, with a 5 s timeout each, which vulnerability service answers:
an OSV API (``BW_AUDIT_OSV_URL``, default https://api.osv.dev: point it at an
internal OSV mirror on an air-gapped network) or PyPI's per-release JSON API.
If none does, it says so and exits 0 having audited nothing (``--strict``: exit
3), rather than hang. A known-vulnerable pin makes it exit 1.

Exit codes: 0 nothing known-vulnerable (or nothing could be checked, said loudly),
1 vulnerabilities found, 2 usage or tool error, 3 no service reachable with --strict.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / ".tools" / "audit"
LOCK = REPO / "requirements" / "dev.txt"
OSV_URL = os.environ.get("BW_AUDIT_OSV_URL", "https://api.osv.dev").rstrip("/")
PYPI_URL = os.environ.get("BW_AUDIT_PYPI_URL", "https://pypi.org").rstrip("/")
PROBE_TIMEOUT = 5.0
AUDIT_TIMEOUT = 600


def _say(msg: str) -> None:
    print(f"audit: {msg}", flush=True)


def probe_osv() -> str | None:
    """None if the OSV API answers a query, else why not."""
    body = json.dumps({"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "0"})
    req = urllib.request.Request(
        OSV_URL + "/v1/query",
        data=body.encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT) as resp:
            json.loads(resp.read())
            return None
    except (OSError, ValueError) as exc:
        return f"{OSV_URL}: {exc}"


def probe_pypi() -> str | None:
    """None if PyPI's per-release JSON API (what pip-audit's pypi service reads) answers."""
    from importlib.metadata import version

    url = f"{PYPI_URL}/pypi/pip/{version('pip')}/json"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as resp:
            if "vulnerabilities" in json.loads(resp.read()):
                return None
            return f"{url}: no vulnerability data in the answer"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"


def frozen_requirements() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "requirements.txt"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    path.write_text(done.stdout, encoding="utf-8")
    return path


def pip_audit(requirements: Path, service: list[str]) -> int:
    exe = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or shutil.which(
        "pip-audit"
    )
    if exe is None:
        _say("pip-audit is not installed (it is in the dev extra: pip install -e '.[dev]')")
        return 2
    argv = [
        exe,
        "-r",
        str(requirements),
        "--no-deps",  # the file pins everything already: audit those pins, resolve nothing
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--timeout",
        "15",
        "--cache-dir",
        str(OUT / "cache"),
        *service,
    ]
    _say(" ".join(argv[1:]))
    try:
        return subprocess.run(argv, timeout=AUDIT_TIMEOUT, check=False).returncode
    except subprocess.TimeoutExpired:
        _say(f"pip-audit took more than {AUDIT_TIMEOUT}s; stopped")
        return 2


def npm_audit(strict: bool = False) -> int:
    """npm audit of each vendored package lock: 0 clean, 1 vulnerable (moderate or
    worse), 2 npm missing or stuck, 3 (with ``strict``) or 0 when the registry's
    advisory endpoint does not answer (the registry proxy here refuses its POST)."""
    packages = [p for p in (REPO / "services" / "api" / "static").rglob("package.json")]
    if not packages:
        _say("npm audit: no vendored front-end packages; nothing to audit")
        return 0
    npm = shutil.which("npm")
    if npm is None:
        _say("npm audit: npm is not installed")
        return 2
    worst = 0
    for package in packages:
        where = package.parent.relative_to(REPO)
        try:
            done = subprocess.run(
                [npm, "audit", "--json", "--audit-level=moderate"],
                cwd=package.parent,
                timeout=120,
                check=False,
                capture_output=True,
                text=True,
            )
        except subprocess.TimeoutExpired:
            _say(f"npm audit in {where} took more than 120 s; stopped")
            worst = max(worst, 2)
            continue
        try:
            report = json.loads(done.stdout or "{}")
        except json.JSONDecodeError:
            report = {}
        if "error" in report or "metadata" not in report:
            reason = report.get("message") or done.stderr.strip().splitlines()[-1:] or "no answer"
            _say(
                f"npm audit in {where}: NOT AUDITED, the advisory endpoint did not answer: {reason}"
            )
            worst = max(worst, 3 if strict else 0)
            continue
        found = report["metadata"].get("vulnerabilities", {})
        serious = sum(found.get(level, 0) for level in ("moderate", "high", "critical"))
        if serious:
            _say(f"npm audit in {where}: {serious} moderate or worse: {found}")
            worst = max(worst, 1)
        else:
            _say(f"npm audit in {where}: no known vulnerabilities ({found})")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-r",
        "--requirements",
        type=Path,
        help=f"pinned requirements file (default: the lock file {LOCK.relative_to(REPO)})",
    )
    parser.add_argument(
        "--installed", action="store_true", help="audit this environment (pip freeze) instead"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 3 when no vulnerability service answers"
    )
    args = parser.parse_args(argv)
    if args.installed and args.requirements:
        parser.error("give -r FILE or --installed, not both")
    requirements = frozen_requirements() if args.installed else (args.requirements or LOCK)
    if not requirements.is_file():
        _say(f"-r {requirements}: no such file")
        return 2

    osv_problem = probe_osv()
    pypi_problem = probe_pypi() if osv_problem else None
    if osv_problem is None:
        service = ["-s", "osv", "--osv-url", OSV_URL + "/v1/query"]
    elif pypi_problem is None:
        service = ["-s", "pypi"]
    else:
        _say("NOT AUDITED: no vulnerability service is reachable from here.")
        _say(f"  OSV:  {osv_problem}")
        _say(f"  PyPI: {pypi_problem}")
        _say(
            "  Set BW_AUDIT_OSV_URL to an OSV mirror, or run `make audit` where "
            "api.osv.dev or pypi.org's JSON API is reachable."
        )
        code = 3 if args.strict else 0
        npm = npm_audit(args.strict)
        return code or npm
    code = pip_audit(requirements, service)
    npm = npm_audit(args.strict)
    if code == 0 and npm == 0:
        _say("no known vulnerabilities")
    return code or npm


if __name__ == "__main__":
    raise SystemExit(main())
