"""The dashboard's security headers, and the page working under its strict CSP in a
real browser (the ``page`` fixture fails on any CSP violation report)."""

from __future__ import annotations

import urllib.request

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ApiServer

pytestmark = pytest.mark.integration


def test_dashboard_works_under_a_strict_csp_and_sends_the_headers(
    api_server: ApiServer, page: Page
) -> None:
    response = page.goto(f"{api_server.url}/#token={api_server.token}")
    assert response is not None and response.status == 200
    headers = response.headers
    host = f"127.0.0.1:{api_server.port}"
    policy = headers["content-security-policy"]
    directives = {
        name: value
        for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))
        if name
    }
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == f"'self' ws://{host}"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in headers  # plain HTTP: HSTS only with TLS

    # The page goes live under that policy: REST and the WebSocket are allowed.
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=30_000)
    expect(page.locator("#sections tbody tr").first).to_be_visible()

    # The static files carry the headers too.
    for path in ("/app.js", "/style.css", "/index.html"):
        with urllib.request.urlopen(api_server.url + path, timeout=5) as resp:
            assert resp.headers["x-content-type-options"] == "nosniff", path
            assert resp.headers["content-security-policy"] == policy, path
            assert resp.headers["x-frame-options"] == "DENY", path

    # The policy is enforced: an injected inline script does not run, and is reported.
    violations: list[str] = page.csp_violations  # type: ignore[attr-defined]
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__injected = true'; document.head.appendChild(s); }"
    )
    page.wait_for_function("() => true")
    assert page.evaluate("() => window.__injected === true") is False
    page.wait_for_timeout(300)
    assert any("script-src" in v for v in violations), violations
    violations.clear()  # expected: the fixture fails on any other violation
