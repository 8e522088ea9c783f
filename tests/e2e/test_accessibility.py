"""The dashboard is usable from the keyboard and passes axe-core (no serious or critical
violation) at an ops-room 1920x1080 and a laptop's 1280x800, with a firing alert, the
section detail and the ack dialog open, and logs no console error. Real system:
ingest -> Kafka -> aggregator -> Kafka -> API -> Chromium."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ApiServer, axe_violations, crossing_rules
from tests.integration.conftest import Deployment, Worker, event

pytestmark = pytest.mark.integration

LIVE_MS = 30_000
ALERT_ID = "e2e-a11y.LV-KRA.1"

# What has the focus: "#id", "g.sec[LV-KRA]", "tr[LV-KRA]", "th[level]", or the tag,
# and whether it shows a focus indicator (:focus-visible with an outline, or the map's
# own marker stroke for a section).
FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return { what: "body", visible: false };
  const what = e.id ? `#${e.id}`
    : e.matches("g.sec") ? `g.sec[${e.dataset.section}]`
    : e.matches("tr[data-section]") ? `tr[${e.dataset.section}]`
    : e.matches("th[data-sort]") ? `th[${e.dataset.sort}]`
    : e.matches("button.ack-button") ? "ack-button"
    : e.matches("li.alert") ? "li.alert" : e.tagName.toLowerCase();
  const style = getComputedStyle(e.matches("g.sec") ? e.querySelector(".marker") : e);
  const visible = e.matches(":focus-visible") && (e.matches("g.sec")
    ? parseFloat(style.strokeWidth) >= 4 : style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2);
  return { what, visible };
}"""


def open_with_an_alert(
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
    tmp_path: Path,
) -> None:
    """A worker whose rule fires on LV-KRA, 55 crossings posted, and the dashboard open
    and live with the alert shown."""
    rules = crossing_rules(tmp_path, "e2e-a11y", "LV-KRA", 50)
    start_worker(BW_RULES_FILE=str(rules))
    resp = ingest.post(
        "/v1/field-events", json=[event("LV-KRA", "crossing_attempt", 55, datetime.now(UTC))]
    )
    assert resp.status_code == 202, resp.text
    page.goto(f"{api_server.url}/#token={api_server.token}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    expect(page.locator(f'#alerts [data-alert-id="{ALERT_ID}"]')).to_be_visible(timeout=LIVE_MS)


def test_keyboard_and_axe_at_1920x1080_and_1280x800(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
    tmp_path: Path,
) -> None:
    open_with_an_alert(start_worker, ingest, api_server, page, tmp_path)
    expect(page.locator("#map path.eu-by-border")).to_have_count(1)

    # Tab walks the page in reading order, each stop with a visible focus indicator.
    seen: list[str] = []
    invisible: list[str] = []
    for _ in range(90):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused["what"] not in seen:
            seen.append(focused["what"])
        if not focused["visible"]:
            invisible.append(focused["what"])
        if focused["what"].startswith("tr["):
            break
    assert invisible == [], f"focus not visible on {invisible}"
    order = ["#slider", "#live", "#zoom-in", "#map", "g.sec[LV-KRA]", "ack-button"]
    order += ["th[level]", "tr[LV-KRA]"]
    positions = [seen.index(x) if x in seen else -1 for x in order]
    assert -1 not in positions and positions == sorted(positions), seen

    # Enter on a table row opens the detail (chart, events, alerts, reports); Space too.
    page.keyboard.press("Enter")  # the focus is on the first row: LV-KRA (highest level)
    detail = page.locator("#detail")
    expect(page.locator("#detail-title")).to_contain_text("LV-KRA")
    expect(detail.locator("#hourly canvas").first).to_be_visible()
    expect(detail.locator('#detail-events li[data-kind="crossing_attempt"]')).to_have_count(
        1, timeout=LIVE_MS
    )
    expect(detail.locator(f'#detail-alerts li[data-alert-id="{ALERT_ID}"]')).to_be_visible()
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    page.locator('tr[data-section="LV-KRA"]').focus()
    page.keyboard.press(" ")
    expect(detail).to_be_visible()
    expect(detail.locator("#detail-events li[data-event-id]")).to_have_count(1, timeout=LIVE_MS)

    for width, height in ((1920, 1080), (1280, 800)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)  # layout and the chart's resize
        assert axe_violations(page) == [], f"axe at {width}x{height}"
        # Usable: nothing wider than the screen, the board's parts on it.
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        for part in ("#map", "#table-panel", "#alerts-panel", "#timeline", "#hourly canvas"):
            box = page.locator(part).first.bounding_box()
            assert box is not None and box["width"] > 200, (part, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (part, box)

        # The ack dialog, from the keyboard: opens on Enter, passes axe, Escape closes
        # it and gives the focus back to the alert's button.
        button = page.locator(f'#alerts [data-alert-id="{ALERT_ID}"] button.ack-button')
        button.focus()
        page.keyboard.press("Enter")
        dialog = page.locator("#ack-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#ack-by")).to_be_focused()
        assert axe_violations(page) == [], f"axe with the ack dialog at {width}x{height}"
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(button).to_be_focused()
        expect(detail).to_be_visible()  # Escape closed the dialog, not the detail

    assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]


# Whether the focused element is the alert's item (or its Ack button) in the list
# now on the page, with a visible focus indicator.
ALERT_FOCUS = """([id, ack]) => {
  const e = document.activeElement;
  const item = e && e.closest && e.closest("#alerts li[data-alert-id]");
  return Boolean(item && item.isConnected && item.dataset.alertId === id
    && (ack ? e.matches(".ack-button") : e === item) && e.matches(":focus-visible"));
}"""


def test_the_focus_stays_on_an_alert_while_the_page_updates(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api_server: ApiServer,
    page: Page,
    tmp_path: Path,
) -> None:
    """Every section update rebuilds the alert list; a keyboard user reading an alert
    (or about to ack it) must not be thrown back to the top of the page."""
    open_with_an_alert(start_worker, ingest, api_server, page, tmp_path)

    for ack in (False, True):
        for _ in range(60):  # Tab to the alert (then on to its button), as a user would
            page.keyboard.press("Tab")
            if page.evaluate(ALERT_FOCUS, [ALERT_ID, ack]):
                break
        assert page.evaluate(ALERT_FOCUS, [ALERT_ID, ack]), f"Tab never reached it (ack={ack})"
        # Mark the list's item, post an update of another section, and wait until
        # the list has been rebuilt around it.
        page.evaluate("() => { document.querySelector('#alerts li[data-alert-id]').bwOld = 1; }")
        resp = ingest.post(
            "/v1/field-events", json=[event("LV-PIE", "detection", 1, datetime.now(UTC))]
        )
        assert resp.status_code == 202, resp.text
        page.wait_for_function(
            "() => { const li = document.querySelector('#alerts li[data-alert-id]');"
            " return li && !li.bwOld; }",
            timeout=LIVE_MS,
        )
        assert page.evaluate(ALERT_FOCUS, [ALERT_ID, ack]), (
            f"focus lost on a re-render (ack={ack}): {page.evaluate('() => document.activeElement.outerHTML.slice(0, 120)')}"
        )
    assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]
