"""First run as a new user has it: `borderwatch up`, one click on the printed
dashboard URL, a working page with no console errors.

`up` runs as a user runs it (tests/smoke's ``Up``), on free ports given as flags
so the test never needs 8080/8081/6066; the browser is Debian's Chromium.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import chromium_page
from tests.smoke.test_up import Up, processes_with

pytestmark = pytest.mark.smoke


def test_the_printed_dashboard_url_opens_a_working_page_without_console_errors(
    tmp_path: Path,
) -> None:
    up = Up(tmp_path / "bw-data", "--demo")
    try:
        url = up.wait_for(r"Dashboard\s+(\S+)", 120).group(1)
        token = up.wait_for(r"Authorization: Bearer (bw_\S+)", 5).group(1)
        api_port = up.ports["api"]
        # One click: the URL carries the token in the fragment, on the port asked for.
        assert url == f"http://127.0.0.1:{api_port}/#token={token}", up.output

        with chromium_page() as page:
            page.goto(url)
            page.wait_for_selector("#connection[data-state='live']", timeout=30_000)
            assert page.locator("#auth").is_hidden(), "the page asked for a token"
            page.wait_for_selector("#sections tbody tr[data-section]")
            # The token left the address bar (and so history and screenshots) but
            # the tab keeps using it.
            assert page.evaluate("location.href") == f"http://127.0.0.1:{api_port}/"
            assert token not in page.evaluate("location.href")
            assert page.evaluate("sessionStorage.getItem('borderwatch.token')") == token
            # Demo events reach the page over the live feed.
            page.wait_for_function(
                "() => [...document.querySelectorAll('#sections tbody td.num')]"
                ".some((n) => /^[1-9]/.test(n.textContent.trim()))",
                timeout=60_000,
            )
            # A reload keeps working from sessionStorage, no typing.
            page.reload()
            page.wait_for_selector("#connection[data-state='live']", timeout=30_000)
            assert page.locator("#auth").is_hidden()
            # Let late requests (icons, feeds, detail) happen before judging the console.
            page.locator("#sections tbody tr[data-section]").first.click()
            page.wait_for_selector("#detail:not([hidden])")
            time.sleep(2)
            assert page.console_errors == [], f"browser console errors: {page.console_errors}"
            assert page.js_errors == [], f"JavaScript errors: {page.js_errors}"
            assert page.csp_violations == [], f"CSP violations: {page.csp_violations}"
    finally:
        if up.process.poll() is None:
            up.stop(signal.SIGTERM)
        up.kill_everything()
    assert up.process.returncode == 0, up.output
    assert processes_with(up.marker) == []
    assert re.search(r"stopped in", up.output)
