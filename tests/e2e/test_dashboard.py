"""The dashboard in a real browser against the real system.

HTTP -> ingest -> Kafka -> aggregator worker -> Kafka -> API (uvicorn, auth on)
-> WebSocket -> the page. Nothing is mocked; every wait is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR
from tests.e2e.conftest import ApiServer, crossing_rules
from tests.integration.conftest import Deployment, Worker, event

pytestmark = pytest.mark.integration

LIVE_MS = 30_000  # broker -> worker -> API -> browser, with a 1 s worker tick
SCREENSHOT = Path("/tmp/dashboard.png")


def crossing(section: str, count: int) -> dict[str, Any]:
    return event(section, "crossing_attempt", count, datetime.now(UTC))


def post(ingest: TestClient, section: str, count: int, n: int = 1) -> None:
    resp = ingest.post("/v1/field-events", json=[crossing(section, count) for _ in range(n)])
    assert resp.status_code == 202, resp.text
    assert resp.json()["rejected"] == []


def test_dashboard_follows_the_live_picture(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
    tmp_path: Path,
) -> None:
    rules = crossing_rules(tmp_path, "e2e-crossings", "LV-*", 50)
    start_worker(BW_RULES_FILE=str(rules))
    catalogue = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")

    page.goto(f"{api_server.url}/#token={api_server.token}")
    rows = page.locator("#sections tbody tr")
    expect(rows).to_have_count(len(catalogue))
    for section_id in catalogue:
        expect(page.locator(f'tr[data-section="{section_id}"]')).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    expect(page.locator("#connection")).to_contain_text("live")
    expect(page.locator("#auth")).to_be_hidden()
    # The token left the address bar (and so screenshots and history).
    assert api_server.token not in page.url
    # The map has one marker per section.
    expect(page.locator("#map g.sec")).to_have_count(len(catalogue))
    page.evaluate("window.__noReload = true")  # gone if the page reloads

    row = page.locator('tr[data-section="LV-KRA"]')
    expect(row).to_have_attribute("data-level", "low")
    expect(row.locator('[data-col="level"]')).to_have_text("low")
    post(ingest, "LV-KRA", 10, 4)  # 40: below the threshold
    expect(row.locator('[data-col="crossing_24h"]')).to_have_text("40", timeout=LIVE_MS)
    expect(row.locator('[data-col="crossing_1h"]')).to_have_text("40")
    expect(page.locator('#totals [data-country="LV"] [data-window="24h"]')).to_have_text("40")
    expect(page.locator("#alerts li")).to_have_count(0)

    post(ingest, "LV-KRA", 15)  # 55: crosses 50 -> high
    alert = page.locator('#alerts [data-alert-id="e2e-crossings.LV-KRA.1"]')
    expect(alert).to_be_visible(timeout=LIVE_MS)
    expect(alert).to_have_attribute("data-severity", "high")
    expect(alert.locator(".level")).to_have_text("high")
    expect(alert).to_contain_text("LV-KRA")
    expect(alert).to_contain_text("since")
    expect(row.locator('[data-col="crossing_24h"]')).to_have_text("55", timeout=LIVE_MS)
    expect(row).to_have_attribute("data-level", "high", timeout=LIVE_MS)
    expect(row.locator('[data-col="level"]')).to_have_text("high")
    expect(page.locator('#map g.sec[data-section="LV-KRA"]')).to_have_attribute(
        "data-level", "high"
    )
    # The level is written on the map too, not only coloured.
    expect(page.locator('#map g.sec[data-section="LV-KRA"] text.label')).to_have_text("LV-KRA HIGH")
    expect(page.locator('#transitions [data-alert-id="e2e-crossings.LV-KRA.1"]')).to_contain_text(
        "firing"
    )
    expect(page.locator('#totals [data-country="LV"] [data-window="24h"]')).to_have_text("55")
    expect(page.locator('#totals [data-country="PL"] [data-window="24h"]')).to_have_text("0")
    # Highest level first (the default sort): LV-KRA now tops the table.
    expect(rows.first).to_have_attribute("data-section", "LV-KRA")
    assert page.evaluate("window.__noReload === true"), "the page reloaded"

    # Click the row: the detail panel with the 7-day hourly chart (uPlot) from the REST
    # detail (?hours=168), the section's events and alerts.
    row.click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(page.locator("#detail-title")).to_contain_text("LV-KRA")
    chart = detail.locator("#hourly")
    expect(chart.locator("canvas").first).to_be_visible()
    expect(chart).to_have_attribute("data-hours", "168")
    expect(chart).to_have_attribute("data-last_crossing_attempt", "55")
    expect(chart).to_have_attribute("data-total_crossing_attempt", "55")
    expect(chart).to_have_attribute("data-total_detection", "0")
    expect(detail.locator('tr[data-kind="crossing_attempt"] [data-col="24h"]')).to_have_text("55")
    expect(detail.locator("#detail-events li[data-event-id]")).to_have_count(5)
    expect(
        detail.locator('#detail-alerts li[data-alert-id="e2e-crossings.LV-KRA.1"]')
    ).to_be_visible()

    # Sorting by a column header.
    page.locator('#sections th[data-sort="section_id"]').click()
    expect(page.locator('#sections th[data-sort="section_id"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    expect(rows.first).to_have_attribute("data-section", sorted(catalogue)[0])
    page.locator('#sections th[data-sort="crossing_24h"]').click()
    expect(rows.first).to_have_attribute("data-section", "LV-KRA")

    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_without_a_token_the_dashboard_asks_for_one(api_server: ApiServer, page: Page) -> None:
    page.goto(api_server.url + "/")
    auth = page.locator("#auth")
    expect(auth).to_be_visible()
    expect(page.locator("#auth-title")).to_have_text(re.compile("token needed", re.I))
    expect(page.locator("#connection")).to_have_attribute("data-state", "auth")
    expect(page.locator("#board")).to_be_hidden()

    # A wrong token is refused with the same clear message.
    page.locator("#token-input").fill("bw_nope_nothing")
    page.locator("#login button[type=submit]").click()
    expect(page.locator("#auth-message")).to_contain_text("refused")
    expect(auth).to_be_visible()

    # The right one, typed into the field, brings the board and the live feed.
    page.locator("#token-input").fill(api_server.token)
    page.locator("#login button[type=submit]").click()
    expect(auth).to_be_hidden()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    expect(page.locator("#sections tbody tr").first).to_be_visible()


def test_reconnects_and_resyncs_after_an_api_restart(
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
) -> None:
    start_worker()
    page.goto(f"{api_server.url}/#token={api_server.token}")
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    page.evaluate("window.__noReload = true")

    catalogue = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")
    api_server.stop()
    expect(connection).to_have_attribute("data-state", "reconnecting")
    expect(connection).to_contain_text("reconnecting")
    expect(connection).to_contain_text("attempt")
    # What happens while the page is cut off reaches it through the resync.
    post(ingest, "PL-BIA", 7, 3)
    api_server.start()
    expect(connection).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    cell = page.locator('tr[data-section="PL-BIA"] [data-col="crossing_24h"]')
    expect(cell).to_have_text("21", timeout=LIVE_MS)
    expect(page.locator('#totals [data-country="PL"] [data-window="24h"]')).to_have_text("21")
    assert page.evaluate("window.__noReload === true"), "the page reloaded"
    # Reloaded from REST + snapshot, not appended: one row, one map section, one
    # country total each.
    for selector, attribute in (
        ("#sections tbody tr", "data-section"),
        ("#map g.sec", "data-section"),
        ("#totals .country", "data-country"),
    ):
        ids = page.locator(selector).evaluate_all(
            f"(nodes) => nodes.map((n) => n.getAttribute('{attribute}'))"
        )
        assert len(ids) == len(set(ids)), f"duplicate {selector}: {ids}"
    expect(page.locator("#sections tbody tr")).to_have_count(len(catalogue))
    expect(page.locator("#map g.sec")).to_have_count(len(catalogue))
