"""Acknowledging a firing alert from the dashboard, seen on a second dashboard.

HTTP -> ingest -> Kafka -> aggregator worker (a real alert) -> API -> two pages
in Chromium: one acknowledges (POST with the `ack` scope), the other shows it
from its live feed. A token with only `read` is told why it cannot.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from services.common.auth import create_token
from tests.e2e.conftest import ApiServer, crossing_rules
from tests.integration.conftest import Deployment, Worker, event, wait_until

pytestmark = pytest.mark.integration

LIVE_MS = 30_000


def _status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


ALERT_ID = "e2e-ack.LV-KRA.1"


def test_an_ack_in_one_page_shows_in_another_within_2_s(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
    tmp_path: Path,
) -> None:
    rules = crossing_rules(tmp_path, "e2e-ack", "LV-KRA", 50)
    start_worker(BW_RULES_FILE=str(rules))
    tokens_file = api_server.settings.tokens_file
    assert tokens_file is not None
    acker = create_token(tokens_file, ["read", "ack"], label="e2e duty desk")
    reader = api_server.token  # the `read` scope only
    # The API picks up a new token from the file within about a second (a stat() at
    # most once a second on the request path): wait for it rather than race it.
    wait_until(lambda: _status(api_server.url + "/api/v1/sections", acker) == 200, 10, "new token")

    resp = ingest.post(
        "/v1/field-events",
        json=[event("LV-KRA", "crossing_attempt", 55, datetime.now(UTC))],
    )
    assert resp.status_code == 202, resp.text

    browser: Any = page.context.browser
    other_context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        watcher = other_context.new_page()
        console_errors: list[str] = []
        watcher.on(
            "console", lambda m: console_errors.append(m.text) if m.type == "error" else None
        )
        watcher.goto(f"{api_server.url}/#token={reader}")
        page.goto(f"{api_server.url}/#token={acker}")
        for p in (page, watcher):
            expect(p.locator("#connection")).to_have_attribute(
                "data-state", "live", timeout=LIVE_MS
            )
            expect(p.locator(f'#alerts [data-alert-id="{ALERT_ID}"]')).to_be_visible(
                timeout=LIVE_MS
            )

        alert = page.locator(f'#alerts [data-alert-id="{ALERT_ID}"]')
        expect(alert).to_have_attribute("data-acked", "false")
        alert.locator("button.ack-button").click()
        dialog = page.locator("#ack-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#ack-alert")).to_contain_text("LV-KRA")
        # The name is asked for: an empty one is not sent.
        page.locator("#ack-submit").click()
        expect(dialog).to_be_visible()
        page.locator("#ack-by").fill("LV duty officer")
        page.locator("#ack-comment").fill("patrol sent to the fence")
        submitted = time.monotonic()
        page.locator("#ack-submit").click()
        expect(dialog).to_be_hidden()
        expect(alert).to_have_attribute("data-acked", "true")
        expect(alert.locator(".acked")).to_contain_text("LV duty officer")

        # The other page, with its own feed, shows it within 2 s.
        seen = watcher.locator(f'#alerts [data-alert-id="{ALERT_ID}"]')
        expect(seen).to_have_attribute("data-acked", "true", timeout=2_000)
        took = time.monotonic() - submitted
        expect(seen.locator(".acked")).to_contain_text("LV duty officer")
        expect(seen.locator(".acked")).to_contain_text("patrol sent to the fence")
        print(f"\n[figure] ack visible on the second dashboard {took:.2f}s after the click")

        # The reading page may not acknowledge, and is told why.
        seen.locator("button.ack-button").click()
        watcher.locator("#ack-by").fill("LT duty officer")
        watcher.locator("#ack-submit").click()
        error = watcher.locator("#ack-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("ack")
        expect(error).to_contain_text("scope")
        expect(error).to_contain_text("borderwatch token create --scopes read,ack")
        expect(watcher.locator("#ack-dialog")).to_be_visible()
        watcher.locator("#ack-cancel").click()
        expect(watcher.locator("#ack-dialog")).to_be_hidden()
        # Keyboard users land back on the alert's button.
        expect(seen.locator("button.ack-button")).to_be_focused()
        # A reload shows who acknowledged (from the REST detail), not only that someone did.
        watcher.reload()
        again = watcher.locator(f'#alerts [data-alert-id="{ALERT_ID}"] .acked')
        expect(again).to_contain_text("LV duty officer", timeout=LIVE_MS)
        # The refused POST is the only console error (Chromium logs every 4xx).
        assert [e for e in console_errors if "403" not in e] == [], console_errors
        assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]
    finally:
        other_context.close()
