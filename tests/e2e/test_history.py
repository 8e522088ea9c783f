"""The time slider shows the picture as it was at an earlier hour, with that hour's
counts and firing alerts, and "Live" returns to the feed. Real system: events
posted with event times hours apart, the aggregator's hourly buckets, the API's
``GET /api/v1/state?at=`` (issue 13, built in branch issue-13b) and Chromium.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ApiServer, axe_violations, crossing_rules
from tests.integration.conftest import Deployment, Worker, event

pytestmark = pytest.mark.integration

LIVE_MS = 30_000
ALERT_ID = "e2e-history.LV-KRA.1"


def test_the_slider_shows_an_earlier_picture_and_live_returns(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
    tmp_path: Path,
) -> None:
    rules = crossing_rules(tmp_path, "e2e-history", "LV-KRA", 30)
    # Events five hours old still count (the default grace is 2 h).
    start_worker(BW_RULES_FILE=str(rules), BW_GRACE_SECONDS="43200")
    now = datetime.now(UTC)
    earlier = [
        event("LV-KRA", "crossing_attempt", 10, now - timedelta(hours=5)),
        event("PL-BIA", "detection", 4, now - timedelta(hours=5)),
    ]
    assert ingest.post("/v1/field-events", json=earlier).status_code == 202
    later = [event("LV-KRA", "crossing_attempt", 25, now)]  # 35 in 24 h: the alert fires now
    assert ingest.post("/v1/field-events", json=later).status_code == 202

    page.goto(f"{api_server.url}/#token={api_server.token}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    row = page.locator('tr[data-section="LV-KRA"]')
    expect(row.locator('[data-col="crossing_24h"]')).to_have_text("35", timeout=LIVE_MS)
    expect(page.locator(f'#alerts [data-alert-id="{ALERT_ID}"]')).to_be_visible(timeout=LIVE_MS)
    expect(row).to_have_attribute("data-level", "high")

    # Three steps back with the keyboard: the top of the hour two hours before this one,
    # between the two posts (the earlier events' hour has ended, the later one's not begun).
    slider = page.locator("#slider")
    slider.focus()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    expected = (hour - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def asks_for_it(r: Any) -> bool:
        query = parse_qs(urlparse(r.url).query)
        return urlparse(r.url).path == "/api/v1/state" and query.get("at") == [expected]

    with page.expect_response(asks_for_it, timeout=LIVE_MS) as asked:
        for _ in range(3):
            page.keyboard.press("ArrowLeft")
    response = asked.value
    assert response.status == 200, response.text()
    at = datetime.fromisoformat(expected.replace("Z", "+00:00"))
    body = response.json()
    assert datetime.fromisoformat(body["at"].replace("Z", "+00:00")) == at, body["at"]

    status = page.locator("#timeline-status")
    expect(status).to_have_attribute("data-state", "history")
    expect(status).to_contain_text("not live")
    expect(page.locator("body")).to_have_attribute("data-mode", "history")
    expect(page.locator("#live")).to_have_attribute("aria-pressed", "false")
    # The picture then: 10 attempts in 24 h, no alert, as the API rebuilt it.
    expect(row.locator('[data-col="crossing_24h"]')).to_have_text("10")
    expect(page.locator('#totals [data-country="LV"] [data-window="24h"]')).to_have_text("10")
    expect(page.locator('tr[data-section="PL-BIA"] [data-col="detection"]')).to_have_text("4")
    expect(page.locator(f'#alerts [data-alert-id="{ALERT_ID}"]')).to_have_count(0)
    expect(page.locator("#alerts-count")).to_have_text("0")
    then = {s["section_id"]: s for s in body["sections"]}
    assert then["LV-KRA"]["counts_24h"]["crossing_attempt"] == 10
    expect(row).to_have_attribute("data-level", then["LV-KRA"]["level"])
    expect(page.locator('#map g.sec[data-section="LV-KRA"]')).to_have_attribute(
        "data-level", then["LV-KRA"]["level"]
    )
    assert then["LV-KRA"]["level"] != "high"
    # The section's 7-day chart marks the hour shown.
    row.click()
    chart = page.locator("#hourly")
    expect(chart.locator("canvas").first).to_be_visible()
    expect(chart).to_have_attribute("data-marker", body["at"])
    assert axe_violations(page) == [], "axe in the history view"

    # Live: the feed's picture again, at once (it was kept current meanwhile).
    page.locator("#live").click()
    expect(status).to_have_attribute("data-state", "live")
    expect(slider).to_have_value("0")
    expect(row.locator('[data-col="crossing_24h"]')).to_have_text("35")
    expect(page.locator(f'#alerts [data-alert-id="{ALERT_ID}"]')).to_be_visible()
    expect(row).to_have_attribute("data-level", "high")
    expect(chart).to_have_attribute("data-marker", "")
    assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]
