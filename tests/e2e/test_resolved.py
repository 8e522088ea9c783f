"""The alerts panel's resolved history, from REST on load and from the live feed.

Alert transitions are written to the deployment's ``bw.alerts`` topic as a worker
writes them (schema-checked by the ``Alert`` model); the real API reads them from
Kafka and the page, in Chromium, shows them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from playwright.sync_api import Page, expect

from schemas.models import Alert
from services.common.kafka import make_producer
from tests.e2e.conftest import ApiServer
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.integration

LIVE_MS = 30_000


def transition(section: str, seq: int, status: str, started: datetime) -> dict[str, Any]:
    now = datetime.now(UTC)
    return Alert(
        alert_id=f"e2e-resolved.{section}.1",
        seq=seq,
        rule="e2e-resolved",
        section_id=section,
        country=section[:2],
        status=status,
        severity="high",
        value=120,
        threshold=100,
        window="24h",
        started_at=started,
        updated_at=now,
        resolved_at=now if status == "resolved" else None,
        summary=f"{section}: 120 crossing attempts in 24 h ≥ high threshold 100",
    ).model_dump(mode="json")


def publish(dep: Deployment, *alerts: dict[str, Any]) -> None:
    async def send() -> None:
        producer = make_producer(dep.settings())
        await producer.start()
        try:
            for a in alerts:
                await producer.send_and_wait(
                    dep.prefix + "alerts", orjson.dumps(a), key=a["alert_id"].encode()
                )
        finally:
            await producer.stop()

    # Playwright's sync API holds an event loop on this thread: run ours on another.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(timeout=30)


def test_resolved_alerts_are_listed_from_rest_and_from_the_feed(
    deployment: Deployment, api_server: ApiServer, page: Page
) -> None:
    started = datetime.now(UTC) - timedelta(hours=3)
    publish(
        deployment,
        transition("PL-KUZ", 1, "firing", started),
        transition("PL-KUZ", 2, "resolved", started),
    )
    page.goto(f"{api_server.url}/#token={api_server.token}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    resolved = page.locator("#resolved li")
    kuz = page.locator('#resolved li[data-alert-id="e2e-resolved.PL-KUZ.1"]')
    expect(kuz).to_be_visible(timeout=LIVE_MS)
    expect(kuz).to_contain_text("PL-KUZ")
    expect(kuz.locator(".level")).to_have_text("high")
    expect(page.locator('#alerts [data-alert-id="e2e-resolved.PL-KUZ.1"]')).to_have_count(0)

    # Live: firing first (with its Ack button), then resolved: it moves to the history,
    # newest first, once.
    publish(deployment, transition("LT-MED", 1, "firing", datetime.now(UTC)))
    firing = page.locator('#alerts [data-alert-id="e2e-resolved.LT-MED.1"]')
    expect(firing).to_be_visible(timeout=LIVE_MS)
    expect(firing.locator("button.ack-button")).to_be_visible()
    expect(page.locator("#resolved-count")).to_have_text("1")
    publish(deployment, transition("LT-MED", 2, "resolved", datetime.now(UTC)))
    expect(firing).to_have_count(0, timeout=LIVE_MS)
    expect(resolved).to_have_count(2)
    expect(resolved.first).to_have_attribute("data-alert-id", "e2e-resolved.LT-MED.1")
    expect(page.locator("#resolved-count")).to_have_text("2")
    expect(page.locator("#alerts-empty")).to_be_visible()

    # The section's detail lists its alert with the status it ended in.
    page.locator('tr[data-section="LT-MED"]').click()
    item = page.locator('#detail-alerts li[data-alert-id="e2e-resolved.LT-MED.1"]')
    expect(item).to_have_attribute("data-status", "resolved", timeout=LIVE_MS)
    # A reload lists both again, from REST.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    expect(resolved).to_have_count(2, timeout=LIVE_MS)
    assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]
