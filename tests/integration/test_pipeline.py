"""End to end on the real broker: HTTP -> ingest -> Kafka -> Faust worker -> Kafka -> API."""

from __future__ import annotations

import asyncio
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from schemas.models import KINDS
from services.common.kafka import make_consumer
from tests.integration.conftest import Deployment, Worker, event, read_alerts, wait_until

pytestmark = pytest.mark.integration

SECTIONS = ["LV-KRA", "LV-SIL", "LT-MED", "PL-KUZ", "PL-BIA"]


def test_thousand_events_counted_exactly(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    worker = start_worker()
    rng = random.Random(7)
    now = datetime.now(UTC)
    expected: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
    events = []
    for _ in range(1000):
        section, kind = rng.choice(SECTIONS), rng.choice(KINDS)
        count = rng.randint(1, 5)
        # Within the current hour bucket so both 1 h and 24 h windows see it.
        at = now.replace(minute=0, second=0, microsecond=0) + timedelta(
            seconds=rng.uniform(
                0, max(1.0, (now - now.replace(minute=0, second=0)).total_seconds())
            )
        )
        events.append(event(section, kind, count, min(at, now)))
        expected[section][kind] += count
    accepted = 0
    for start in range(0, 1000, 250):
        resp = ingest.post("/v1/field-events", json=events[start : start + 250])
        assert resp.status_code == 202, resp.text
        assert resp.json()["rejected"] == []
        accepted += len(resp.json()["accepted"])
    assert accepted == 1000

    def counts_match() -> bool:
        sections = {s["section_id"]: s for s in api.get("/api/v1/sections").json()}
        return all(sections[sid]["counts_24h"] == expected[sid] for sid in SECTIONS)

    wait_until(counts_match, 60, "API counts equal to the posted counts")
    for sid in SECTIONS:
        detail = api.get(f"/api/v1/sections/{sid}").json()
        assert detail["counts_24h"] == expected[sid]
        assert detail["counts_1h"] == expected[sid]
        assert len(detail["hourly"]) == 24
        series_total = {k: sum(p["counts"][k] for p in detail["hourly"]) for k in KINDS}
        assert series_total == expected[sid]
    # Per-country roll-ups are the exact sums of their sections.
    picture = api.get("/api/v1/state").json()
    by_country = {c["country"]: c for c in picture["countries"]}
    for country in ("LV", "LT", "PL"):
        want = {k: sum(expected[s][k] for s in SECTIONS if s.startswith(country)) for k in KINDS}
        assert by_country[country]["counts_24h"] == want
    assert len(picture["sections"]) == 18
    # An untouched section is listed with zeros.
    other = api.get("/api/v1/sections/LT-VAR").json()
    assert sum(other["counts_24h"].values()) == 0
    metrics = worker.metrics()
    counted = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("bw_aggregator_events_counted_total{")
    )
    assert counted == 1000
    assert "bw_ingest_events_accepted_total" in ingest.get("/metrics").text


def test_websocket_receives_section_update(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    start_worker()
    with api.websocket_connect("/ws/feed") as ws:

        def messages() -> Iterator[dict[str, Any]]:
            """The feed's messages, out of its batch frames, in order."""
            while True:
                frame = ws.receive_json()
                assert frame["type"] == "batch", frame
                yield from frame["messages"]

        feed = messages()
        snapshot = next(feed)
        assert snapshot["type"] == "snapshot"
        assert {s["section_id"] for s in snapshot["payload"]["sections"]} >= set(SECTIONS)
        resp = ingest.post(
            "/v1/field-events", json=[event("PL-KUZ", "detection", 7, datetime.now(UTC))]
        )
        assert resp.status_code == 202
        while True:  # every message until the update; the receive has its own timeout
            message = next(feed)
            if message["type"] == "section_state" and message["payload"]["section_id"] == "PL-KUZ":
                break
        assert message["payload"]["counts_24h"]["detection"] == 7
        # The cursor names the section-state partition the update came from.
        assert re.fullmatch(r"([ska]\d+-\d+_?)+", message["cursor"]), message["cursor"]
        assert message["cursor"] != snapshot["cursor"]


def test_crossing_threshold_raises_exactly_one_alert(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - id: test-crossings\n"
        "    type: threshold\n"
        "    kinds: [crossing_attempt]\n"
        "    window: 24h\n"
        "    sections: ['LV-*']\n"
        "    severity: {high: 50}\n",
        encoding="utf-8",
    )
    start_worker(BW_RULES_FILE=str(rules))
    now = datetime.now(UTC)

    def post(section: str, count: int, n: int = 1) -> None:
        resp = ingest.post(
            "/v1/field-events",
            json=[event(section, "crossing_attempt", count, now) for _ in range(n)],
        )
        assert resp.status_code == 202, resp.text

    post("LV-KRA", 10, 4)  # 40: below
    post("PL-KUZ", 60)  # not selected by the rule
    wait_until(
        lambda: api.get("/api/v1/sections/LV-KRA").json()["counts_24h"]["crossing_attempt"] == 40,
        30,
        "40 counted",
    )
    assert api.get("/api/v1/alerts").json() == []
    post("LV-KRA", 15)  # 55: crosses 50
    post("LV-KRA", 5, 3)  # 70: still above, same severity: no new transition
    wait_until(lambda: api.get("/api/v1/alerts").json(), 30, "the alert in the API")
    wait_until(
        lambda: api.get("/api/v1/sections/LV-KRA").json()["counts_24h"]["crossing_attempt"] == 70,
        30,
        "70 counted",
    )
    alerts = read_alerts(deployment, expect_at_least=1)
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["alert_id"] == "test-crossings.LV-KRA.1"
    assert alert["status"] == "firing"
    assert alert["severity"] == "high"
    assert alert["value"] >= 50
    assert alert["summary"].startswith("LV-KRA: ")
    section = api.get("/api/v1/sections/LV-KRA").json()
    assert section["level"] == "high"
    assert section["firing_alerts"] == ["test-crossings.LV-KRA.1"]
    listed = api.get("/api/v1/alerts", params={"status": "firing"}).json()
    assert [a["alert_id"] for a in listed] == ["test-crossings.LV-KRA.1"]
    assert api.get("/api/v1/sections/PL-KUZ").json()["level"] == "low"


def test_bad_input_is_refused_naming_the_field(ingest: TestClient) -> None:
    good = event("LV-KRA", "detection", 1, datetime.now(UTC))
    resp = ingest.post("/v1/field-events", json={**good, "count": 0})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "count"
    resp = ingest.post("/v1/field-events", json={**good, "section_id": "LV-NOPE"})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "section_id"
    resp = ingest.post("/v1/field-events", json={**good, "passport": "X"})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "passport"
    resp = ingest.post(
        "/v1/field-events", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    # A mixed batch: the good one is accepted (and acknowledged), the bad one explained.
    resp = ingest.post("/v1/field-events", json=[good, {**good, "event_id": "nope"}])
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == [good["event_id"]]
    assert body["rejected"][0]["index"] == 1
    assert body["rejected"][0]["field"] == "event_id"


def test_events_of_one_section_share_a_record_stamped_with_the_newest_time(
    deployment: Deployment, ingest: TestClient
) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    events = [event("LT-MED", "detection", 1, base + timedelta(minutes=m)) for m in (5, 20, 10)] + [
        event("PL-TER", "incident", 1, base)
    ]
    resp = ingest.post("/v1/field-events", json=events)
    assert resp.status_code == 202
    assert sorted(resp.json()["accepted"]) == sorted(e["event_id"] for e in events)

    async def read() -> list[Any]:
        consumer = make_consumer(deployment.settings(), deployment.prefix + "field-events")
        await consumer.start()
        records: list[Any] = []
        try:
            for _ in range(20):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=300), timeout=5)
                for part in batch.values():
                    records += part
                if len(records) >= 2:
                    break
        finally:
            await consumer.stop()
        return records

    records = {r.key.decode(): r for r in asyncio.run(read())}
    assert set(records) == {"LT-MED", "PL-TER"}
    med = records["LT-MED"]
    envelope = orjson.loads(med.value)
    assert envelope["section_id"] == "LT-MED"
    assert [e["event_id"] for e in envelope["events"]] == [e["event_id"] for e in events[:3]]
    assert med.timestamp == int((base + timedelta(minutes=20)).timestamp() * 1000)
