"""The demo, through the real ingest, aggregator worker and broker: 7 days of history
counted, every country counting at once, an alert of every rule type.

The scripted moments are brought closer (seconds instead of a minute after the
start: ``Moments``), so the test stays short; the rest is the demo as
``borderwatch up --demo`` runs it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from services.aggregator.rules import load_discrepancy_rules, load_rules
from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR
from services.demo.generator import Moments, run
from tests.integration.conftest import Deployment, Worker, wait_until

pytestmark = pytest.mark.integration

RULES_FILE = DEFAULT_CONFIG_DIR / "rules.yaml"


def _metric(worker: Worker, name: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in worker.metrics().splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_the_demo_backfills_7_days_counts_every_country_and_fires_every_rule_type(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    rule_type = {r.id: r.type for r in load_rules(RULES_FILE)}
    rule_type |= {r.id: r.type for r in load_discrepancy_rules(RULES_FILE)}
    assert set(rule_type.values()) == {"threshold", "surge", "any", "silence", "report_discrepancy"}
    worker = start_worker()
    catalogue = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")
    stop = threading.Event()
    stages: dict[str, tuple[float, int]] = {}
    started = time.monotonic()

    def demo() -> None:
        run(
            ingest,
            catalogue,
            seed=2026,
            interval=0.5,
            report_interval=3600,
            moments=Moments(surge_at=4, military_at=5, humanitarian_at=6, silent_until=600),
            stop=stop.is_set,
            progress=lambda stage, n: stages.__setitem__(stage, (time.monotonic(), n)),
        )

    thread = threading.Thread(target=demo, name="demo", daemon=True)
    thread.start()
    try:
        wait_until(lambda: "backfilled" in stages, 60, "the 7-day backfill posted")
        backfilled_at, backfilled = stages["backfilled"]
        assert backfilled > 3000, backfilled

        # Every country shows counted events within a minute of the start.
        def countries_counting() -> bool:
            countries = api.get("/api/v1/countries").json()
            return len(countries) == 3 and all(sum(c["counts_24h"].values()) > 0 for c in countries)

        wait_until(countries_counting, 60 - (time.monotonic() - started), "every country counting")

        # An alert of every rule type (an alert is listed once it has fired).
        def fired_types() -> set[str]:
            alerts = api.get("/api/v1/alerts", params={"limit": 1000}).json()
            return {rule_type[a["rule"]] for a in alerts if a["rule"] in rule_type}

        wait_until(
            lambda: fired_types() == set(rule_type.values()), 60, "an alert of every rule type"
        )
        print(
            f"\n[figure] demo: backfill of {backfilled} events posted in "
            f"{backfilled_at - started:.1f}s; every rule type fired "
            f"{time.monotonic() - started:.1f}s after the start"
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert "live" in stages, "the demo did not stop"
    accepted = stages["live"][1]

    # Every accepted event is counted: the backfill came in event-time order, none late.
    wait_until(
        lambda: _metric(worker, "bw_aggregator_events_counted_total") == accepted,
        30,
        f"{accepted} events counted",
    )
    assert _metric(worker, "bw_aggregator_late_events_total") == 0
    # 7 days of history: the week's counts exceed the day's, and a past hour has some.
    sections = api.get("/api/v1/sections").json()
    week = sum(sum(s["counts_7d"].values()) for s in sections)
    day = sum(sum(s["counts_24h"].values()) for s in sections)
    assert week > 3 * day > 0
    six_days_ago = datetime.fromtimestamp(time.time() - 6 * 86400, UTC).isoformat()
    past = api.get("/api/v1/state", params={"at": six_days_ago}).json()
    assert all(sum(c["counts_24h"].values()) > 0 for c in past["countries"]), past["countries"]
