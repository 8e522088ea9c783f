"""The reports and closure-criteria panels in a real browser against the real system.

HTTP -> ingest -> Kafka -> aggregator (report agent, assessor) -> Kafka -> API
(uvicorn, auth on) -> WebSocket -> the page. Nothing is mocked; every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ApiServer
from tests.integration.conftest import Deployment, Worker, event

pytestmark = pytest.mark.integration

LIVE_MS = 30_000


def report(rid: str, country: str, kind: str, lang: str, text: str) -> dict[str, Any]:
    return {
        "report_id": rid,
        "source": {"name": f"{kind} source", "type": kind},
        "country": country,
        "published_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "title": f"Title of {rid}",
        "language": lang,
        "text": text,
    }


def test_reports_assessment_and_discrepancy_panels(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
    tmp_path: Path,
) -> None:
    start_worker()
    at = datetime.now(UTC) - timedelta(seconds=2)
    assert (
        ingest.post(
            "/v1/field-events", json=[event("LV-KRA", "crossing_attempt", 3, at)]
        ).status_code
        == 202
    )
    page.goto(f"{api_server.url}/#token={api_server.token}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    lv = page.locator('#assessments [data-country="LV"]')
    expect(lv).to_have_attribute("data-stage", "monitoring", timeout=LIVE_MS)

    reports = [
        report(
            "vrs-e2e-1",
            "LV",
            "official",
            "lv",
            "Pēdējās diennakts laikā nelikumīgi šķērsot robežu atturētas 57 personas.",
        ),
        report(
            "lsm-e2e-1",
            "LV",
            "official",
            "en",
            "The Belarusian side brought the migrants to the border in military vehicles.",
        ),
        report(
            "lsm-e2e-2",
            "LV",
            "official",
            "en",
            "Belarusian military vehicles were seen near the border again.",
        ),
        report(
            "gg-e2e-1",
            "PL",
            "ngo",
            "pl",
            "Grupa Granica alarmuje o wywózkach i informuje, że w lesie zmarł mężczyzna.",
        ),
    ]
    assert ingest.post("/v1/reports", json=reports).status_code == 202

    # The reports panel: newest first, with figures and signal tags as they are analysed.
    official = page.locator('#reports [data-report-id="vrs-e2e-1"]')
    figure = official.locator('.figure[data-metric="crossing_attempt"]')
    expect(figure).to_have_attribute("data-value", "57", timeout=LIVE_MS)
    expect(figure).to_contain_text("(day)")
    expect(page.locator('#reports [data-report-id="lsm-e2e-1"] .signal')).to_have_attribute(
        "data-signal", "military_activity", timeout=LIVE_MS
    )
    ngo = page.locator('#reports [data-report-id="gg-e2e-1"]')
    expect(ngo.locator('.signal[data-signal="humanitarian_concern"]')).to_be_visible(
        timeout=LIVE_MS
    )
    # Filters: country and source type.
    listed = page.locator("#reports .report")
    expect(listed).to_have_count(4, timeout=LIVE_MS)
    page.select_option("#reports-country", value="PL")
    expect(page.locator("#reports-country")).to_have_value("PL")
    # Renders run on animation frames: generous waits on a loaded machine.
    expect(listed).to_have_count(1, timeout=LIVE_MS)
    expect(listed.first).to_have_attribute("data-country", "PL")
    page.select_option("#reports-country", value="")
    expect(listed).to_have_count(4, timeout=LIVE_MS)
    page.select_option("#reports-source", value="ngo")
    expect(page.locator("#reports-source")).to_have_value("ngo")
    expect(listed).to_have_count(1, timeout=LIVE_MS)
    expect(listed.first).to_have_attribute("data-report-id", "gg-e2e-1")
    page.select_option("#reports-source", value="")
    expect(listed).to_have_count(4, timeout=LIVE_MS)

    # The assessment: military risk rises, with the reports as evidence links.
    military = lv.locator('tr[data-factor="military_risk"]')
    expect(military).to_have_attribute("data-level", "high", timeout=LIVE_MS)
    expect(military.locator('a.report-link:text("lsm-e2e-1")')).to_have_attribute(
        "href", "/api/v1/reports/lsm-e2e-1"
    )
    expect(lv).to_have_attribute("data-stage", "restrictions")
    expect(lv).not_to_contain_text("should")

    # An evidence link keeps the keyboard focus while the panels are rebuilt (every
    # section update rebuilds them).
    link = military.locator('a.report-link:text("lsm-e2e-1")')
    link.focus()
    mark = "document.querySelector('#assessments [data-country=\"LV\"]')"
    page.evaluate(f"() => {{ {mark}.bwOld = 1; }}")
    assert (
        ingest.post(
            "/v1/field-events", json=[event("LV-PIE", "detection", 1, datetime.now(UTC))]
        ).status_code
        == 202
    )
    page.wait_for_function(
        f"() => {{ const lv = {mark}; return lv && !lv.bwOld; }}", timeout=LIVE_MS
    )
    expect(link).to_be_focused()

    # The official 57 against 3 in the field: a discrepancy alert in the alerts panel.
    alert = page.locator('#alerts [data-alert-id="official-vs-field.LV-ALL.1"]')
    expect(alert).to_be_visible(timeout=LIVE_MS)
    expect(alert).to_contain_text("differs from 3 counted in the field")
    alert.click()  # a country-level alert opens no section detail
    expect(page.locator("#detail")).to_be_hidden()
    page.screenshot(path=tmp_path / "reports.png", full_page=True)
