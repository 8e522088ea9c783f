"""Refresh the README's dashboard screenshot (``make screenshot``).

Starts ``borderwatch up --demo`` as a user would (a fresh data directory, free
127.0.0.1 ports given as flags), opens the printed dashboard URL in the machine's
Chromium (Debian ``chromium``; Playwright never downloads a browser) at
1920x1080, waits for the demo's counts and alerts, opens the busiest section's
detail and writes the PNG. Then stops ``up`` with SIGTERM (it stops its children).

Run: ``python scripts/screenshot.py docs/dashboard.png [--wait SECONDS]``
"""

from __future__ import annotations

import argparse
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from services.runtime.broker import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--wait", type=float, default=90.0, help="longest wait for the demo's alerts (s)"
    )
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"screenshot: {CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    script = Path(sys.executable).parent / "borderwatch"
    command = [str(script) if script.exists() else shutil.which("borderwatch") or "borderwatch"]
    ports: list[int] = []
    while len(set(ports)) < 3:
        ports = [free_port() for _ in range(3)]
    with tempfile.TemporaryDirectory(prefix="bw-screenshot-") as data:
        up = subprocess.Popen(
            [
                *command,
                "up",
                "--demo",
                "--data-dir",
                data,
                f"--api-port={ports[0]}",
                f"--ingest-port={ports[1]}",
                f"--aggregator-port={ports[2]}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert up.stdout is not None
        stdout = up.stdout
        threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
        try:
            url = wait_for_url(up, lines, 180.0)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1920, "height": 1080})
                    page.goto(url)
                    page.wait_for_selector("#connection[data-state='live']", timeout=60_000)
                    page.wait_for_selector("#map path.eu-by-border", timeout=30_000)
                    deadline = time.monotonic() + args.wait
                    while time.monotonic() < deadline and page.locator("#alerts li").count() < 3:
                        page.wait_for_timeout(1000)
                    # The busiest section (the table sorts by level first) with its 7 days.
                    page.locator("#sections tbody tr").first.click()
                    page.wait_for_selector("#hourly canvas", timeout=30_000)
                    page.wait_for_selector("#detail-events li", timeout=30_000)
                    page.wait_for_timeout(1500)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    # Down to the end of the detail: the board without the panels below.
                    box = page.locator("#detail").bounding_box()
                    bottom = int(box["y"] + box["height"] + 16) if box else 1080
                    page.screenshot(
                        path=str(args.out),
                        full_page=True,
                        clip={"x": 0, "y": 0, "width": 1920, "height": max(1080, bottom)},
                    )
                finally:
                    browser.close()
        finally:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait(10)
    print(f"screenshot: wrote {args.out}")
    return 0


def wait_for_url(up: subprocess.Popen[str], lines: queue.Queue[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        if up.poll() is not None and lines.empty():
            sys.exit("screenshot: `borderwatch up` exited:\n" + "".join(seen[-30:]))
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        found = re.search(r"Dashboard\s+(http\S+)", line)
        if found:
            return found.group(1)
    sys.exit(f"screenshot: no dashboard URL in {timeout:.0f} s:\n" + "".join(seen[-30:]))


if __name__ == "__main__":
    sys.exit(main())
