"""E2E fixtures: the real broker, aggregator and API (uvicorn) driven by a real browser.

The broker and worker fixtures are the integration ones. The browser is the
machine's Chromium (Debian package ``chromium``) driven by Playwright's Python
package; Playwright never downloads a browser here.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from services.api.app import create_app as create_api
from services.api.settings import ApiSettings
from services.common.auth import create_token
from services.runtime.broker import free_port
from tests.integration.conftest import (  # noqa: F401  (fixtures re-exported)
    Deployment,
    deployment,
    ingest,
    start_worker,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


CSP_VIOLATION = "CSP violation:"
CSP_LISTENER = (
    "document.addEventListener('securitypolicyviolation', (e) => console.error("
    f"'{CSP_VIOLATION} ' + e.violatedDirective + ' ' + e.blockedURI));"
)


class ApiServer:
    """The real API app under uvicorn (in a thread) on a fixed free 127.0.0.1 port.

    ``stop()`` and ``start()`` restart it on the same port, as an operator would.
    """

    def __init__(self, settings: ApiSettings, token: str) -> None:
        self.settings = settings
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> None:
        config = uvicorn.Config(
            create_api(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws_per_message_deflate=False,  # as UVICORN_FLAGS
        )
        self._server = uvicorn.Server(config)
        # Not the main thread, so uvicorn installs no signal handlers.
        self._thread = threading.Thread(target=self._server.run, name="api-uvicorn", daemon=True)
        self._thread.start()
        _wait_ready(self.url + "/readyz", self._thread, timeout)

    def stop(self, timeout: float = 20.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the API server did not stop in {timeout}s")
        self._server = self._thread = None


@pytest.fixture
def api_server(deployment: Deployment, tmp_path: Path) -> Iterator[ApiServer]:  # noqa: F811
    """The API with auth on and one token with the ``read`` scope."""
    tokens = tmp_path / "tokens.json"
    token = create_token(tokens, ["read"], label="e2e")
    settings = ApiSettings(
        kafka_bootstrap=deployment.bootstrap,
        topic_prefix=deployment.prefix,
        auth_enabled=True,
        tokens_file=tokens,
    )
    server = ApiServer(settings, token)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _wait_ready(url: str, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise AssertionError("the API server thread exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = exc.code
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"API not ready in {timeout}s; last: {last!r}")


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A fresh page in the machine's Chromium, 1920x1080 like an ops-room screen.

    The page records JavaScript errors (``page.js_errors``), CSP violations
    (``page.csp_violations``) and every console message of type error, such as
    "Failed to load resource: … 404" (``page.console_errors``).
    """
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's `chromium` package "
            "(apt-get install chromium); Playwright must not download its own browser"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the `playwright` Python package (dev extra)")
    errors: list[str] = []
    violations: list[str] = []
    console_errors: list[str] = []

    def on_console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or text.startswith(CSP_VIOLATION):
            violations.append(text)
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            console_errors.append(f"{text} ({where})" if where else text)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 1080})
            context.set_default_timeout(15_000)
            # Every CSP violation the page hits is reported on the console (Chromium
            # also logs each refusal itself); any of them fails the test.
            context.add_init_script(CSP_LISTENER)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", on_console)
            page.js_errors = errors
            page.csp_violations = violations
            page.console_errors = console_errors
            yield page
        finally:
            browser.close()


# axe-core (npm, pinned in the Makefile's install target), injected by the browser tests.
AXE = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
AXE_VERSION = "4.14.1"


def crossing_rules(tmp_path: Path, rule_id: str, sections: str, high: int) -> Path:
    """A rules file with one 24 h threshold rule on crossing attempts (the e2e tests'
    alert): ``sections`` an id or glob, ``high`` its one threshold."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        f"  - id: {rule_id}\n"
        "    type: threshold\n"
        "    kinds: [crossing_attempt]\n"
        "    window: 24h\n"
        f"    sections: ['{sections}']\n"
        f"    severity: {{high: {high}}}\n",
        encoding="utf-8",
    )
    return rules


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of ``impacts`` on the page as it is now, one line per rule.

    The source is evaluated through the DevTools protocol, which the page's CSP does
    not govern (an injected <script> would be refused, and reported as a violation)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make install` (it installs axe-core@{AXE_VERSION})")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    assert page.evaluate("() => axe.version") == AXE_VERSION
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
            .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                           nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }))"""
    )
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}"
        for v in found
        if v["impact"] in impacts
    ]


@pytest.fixture
def page(deployment: Deployment) -> Iterator[Any]:  # noqa: F811
    """A fresh page (``chromium_page``) after the real broker, aggregator and API.

    Playwright's sync API keeps an event loop running on the main thread while
    it is open, so it starts after ``deployment`` (which calls ``asyncio.run``).
    """
    with chromium_page() as page:
        yield page
    assert page.js_errors == [], f"JavaScript errors on the page: {page.js_errors}"
    assert page.csp_violations == [], f"Content-Security-Policy violations: {page.csp_violations}"
