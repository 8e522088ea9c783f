"""The border map in a real browser: Natural Earth outlines, the EU-Belarus border line,
every catalogue section where it lies, its level written out; zoom and pan by wheel,
drag and keys. Against the real API (uvicorn, auth on) on the real broker."""

from __future__ import annotations

import math
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR
from tests.e2e.conftest import ApiServer

pytestmark = pytest.mark.integration

LIVE_MS = 30_000

# Distance (SVG units, zoom 1) from a point to the nearest of 2,000 points sampled
# along the EU-Belarus border path.
DISTANCE_TO_BORDER = """([x, y]) => {
  const path = document.querySelector("#map path.eu-by-border");
  const total = path.getTotalLength();
  let best = Infinity;
  for (let i = 0; i <= 2000; i++) {
    const p = path.getPointAtLength((total * i) / 2000);
    best = Math.min(best, Math.hypot(p.x - x, p.y - y));
  }
  return best;
}"""


def markers(page: Page) -> dict[str, tuple[float, float]]:
    found: dict[str, Any] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("#map g.sec")].map((g) => {
             const c = g.querySelector("circle.marker");
             return [g.dataset.section, [Number(c.getAttribute("cx")), Number(c.getAttribute("cy"))]];
           }))"""
    )
    return {k: (float(v[0]), float(v[1])) for k, v in found.items()}


def spread(points: dict[str, tuple[float, float]], a: str, b: str) -> float:
    return math.dist(points[a], points[b])


def test_the_map_draws_the_outlines_the_border_and_every_section(
    api_server: ApiServer, page: Page
) -> None:
    catalogue = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")
    page.goto(f"{api_server.url}/#token={api_server.token}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    border = page.locator("#map path.eu-by-border")
    expect(border).to_have_count(1)

    # The four countries' outlines (and their neighbours) from the vendored atlas.
    for code in ("LV", "LT", "PL", "BY"):
        outline = page.locator(f'#map path.country[data-country="{code}"]')
        expect(outline).to_have_count(1)
        assert len(outline.get_attribute("d") or "") > 500, f"{code}: no real outline"
    assert page.locator("#map path.country").count() >= 8  # EE, RU, UA, … around them
    # The border line is long (LV + LT + PL with BY: about 1,250 km), not a stub.
    assert (
        page.evaluate("() => document.querySelector('#map path.eu-by-border').getTotalLength()")
        > 400
    )

    # Every section, with its polyline, its id and its level written in the label.
    sections = page.locator("#map g.sec")
    expect(sections).to_have_count(len(catalogue))
    for section_id in catalogue:
        g = page.locator(f'#map g.sec[data-section="{section_id}"]')
        expect(g).to_have_attribute("data-level", "low")
        expect(g.locator("text.label")).to_have_text(f"{section_id} LOW")
        expect(g.locator("polyline.line")).to_have_count(1)
        assert (g.get_attribute("aria-label") or "").startswith(f"{section_id} LOW")
    # Readable from across the room: labels about 17 px high on the wall screen.
    label = page.locator('#map g.sec[data-section="LT-MED"] text.label').bounding_box()
    assert label is not None and label["height"] >= 15, label
    # The projection puts each section on the border it watches: every marker lies
    # within 30 SVG units (about 30 km at this scale) of the EU-Belarus line, and the
    # countries run north to south LV, LT, PL.
    at = markers(page)
    for section_id, point in at.items():
        distance = page.evaluate(DISTANCE_TO_BORDER, list(point))
        assert distance < 30, f"{section_id} is {distance:.0f} units off the border"
    north = {c: min(y for s, (_, y) in at.items() if s.startswith(c)) for c in ("LV", "LT", "PL")}
    assert north["LV"] < north["LT"] < north["PL"], north

    # Keyboard: + zooms about the centre, arrows pan, 0 fits again.
    page.locator("#map").focus()
    before = markers(page)
    page.keyboard.press("+")
    expect(page.locator("#map")).to_have_attribute("data-zoom", "1.50")
    zoomed = markers(page)
    ratio = spread(zoomed, "LV-PAS", "PL-WLO") / spread(before, "LV-PAS", "PL-WLO")
    assert abs(ratio - 1.5) < 0.01, ratio
    page.keyboard.press("ArrowLeft")
    panned = markers(page)
    assert abs(panned["LT-VAR"][0] - zoomed["LT-VAR"][0] - 40) < 0.5
    assert abs(panned["LT-VAR"][1] - zoomed["LT-VAR"][1]) < 0.5
    page.keyboard.press("-")
    page.keyboard.press("0")
    expect(page.locator("#map")).to_have_attribute("data-zoom", "1.00")
    assert markers(page) == before

    # The wheel zooms about the pointer; a drag pans; neither opens a section.
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -200)
    expect(page.locator("#map")).to_have_attribute("data-zoom", "1.25")
    wheeled = markers(page)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2 + 30, steps=6)
    page.mouse.up()
    dragged = markers(page)
    assert dragged["LV-KRA"][0] > wheeled["LV-KRA"][0] + 20
    assert dragged["LV-KRA"][1] > wheeled["LV-KRA"][1] + 10
    expect(page.locator("#detail")).to_be_hidden()
    # The buttons do the same for a mouse without a wheel.
    page.locator("#zoom-fit").click()
    expect(page.locator("#map")).to_have_attribute("data-zoom", "1.00")
    page.locator("#zoom-in").click()
    expect(page.locator("#map")).to_have_attribute("data-zoom", "1.50")

    # A section opens with Enter from the keyboard and with a click; Escape closes it.
    page.locator('#map g.sec[data-section="LT-MED"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-title")).to_contain_text("LT-MED")
    expect(page.locator('#map g.sec[data-section="LT-MED"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    page.locator('#map g.sec[data-section="PL-BIA"] circle.marker').click()
    expect(page.locator("#detail-title")).to_contain_text("PL-BIA")
    assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]
