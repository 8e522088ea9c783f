"""`make screenshot` refreshes the README's picture: scripts/screenshot.py runs
`borderwatch up --demo`, shoots the dashboard in Chromium and stops what it started."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke

REPO = Path(__file__).resolve().parents[2]


def test_make_screenshot_writes_the_readme_picture(tmp_path: Path) -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "scripts/screenshot.py docs/dashboard.png" in makefile
    assert "](docs/dashboard.png)" in (REPO / "README.md").read_text()

    out = tmp_path / "dashboard.png"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "screenshot.py"), str(out), "--wait", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1920 and height >= 1080, (width, height)
    assert len(data) > 100_000  # a drawn board, not a blank page
