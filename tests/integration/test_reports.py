"""Report analysis on the real broker: ingest -> bw.report-events -> the aggregator's
report agent -> bw.report-analysis -> the API's view."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from schemas.models import ReportAnalysis
from services.common.kafka import make_consumer
from tests.integration.conftest import Deployment, Worker, wait_until

pytestmark = pytest.mark.integration


def read_analyses(dep: Deployment, want: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        consumer = make_consumer(dep.settings(), dep.prefix + "report-analysis")
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline and len(out) < want:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=5)
                for records in batch.values():
                    out += [{"key": r.key, **orjson.loads(r.value)} for r in records]
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


def test_a_posted_report_appears_analysed_on_the_topic_and_in_the_api(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    start_worker()
    published = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    reports = [
        {
            "report_id": "vrs-lv-daily-1",
            "source": {"name": "Valsts robežsardze", "type": "official"},
            "country": "LV",
            "published_at": published.isoformat(),
            "title": "Diennakts situācija uz robežas",
            # Sent as "en" by mistake: the analyser reads it as Latvian.
            "language": "en",
            "text": (
                "Pēdējās diennakts laikā nelikumīgi šķērsot Latvijas–Baltkrievijas robežu "  # noqa: RUF001
                "atturētas 57 personas. Robežsargiem nebija jāpielieto ieroči. "
                "Migranti meta akmeņus robežsargu patruļai. Latvijā ir 1,9 miljoni iedzīvotāju."
            ),
        },
        {
            "report_id": "sg-pl-daily-1",
            "source": {"name": "Straż Graniczna", "type": "official"},
            "country": "PL",
            "published_at": published.isoformat(),
            "title": "Sytuacja na granicy",
            "language": "pl",
            "text": "W ciągu ostatniej doby odnotowano 84 próby nielegalnego przekroczenia granicy.",
            "figures": [{"kind": "crossing_attempt", "count": 90, "section_id": "PL-KUZ"}],
        },
    ]
    with api.websocket_connect("/ws/feed?country=LV") as ws:
        first = orjson.loads(ws.receive_text())["messages"][0]
        assert first["type"] == "snapshot"
        resp = ingest.post("/v1/reports", json=reports)
        assert resp.status_code == 202, resp.text
        feed: list[dict[str, Any]] = []
        # A heartbeat comes at least every 15 s, so each receive returns.
        deadline = time.monotonic() + 60
        while not any(m["type"] == "analysis" for m in feed) and time.monotonic() < deadline:
            feed += orjson.loads(ws.receive_text())["messages"]
    analysis_messages = [m for m in feed if m["type"] == "analysis"]
    # The client filtered on LV: the Polish report's analysis is not sent to it.
    assert [m["payload"]["report_id"] for m in analysis_messages] == ["vrs-lv-daily-1"]
    assert analysis_messages[0]["cursor"]

    on_topic = {a["report_id"]: a for a in read_analyses(deployment, want=2)}
    assert set(on_topic) == {"vrs-lv-daily-1", "sg-pl-daily-1"}
    lv = on_topic["vrs-lv-daily-1"]
    assert lv["key"] == b"LV"
    ReportAnalysis.model_validate({k: v for k, v in lv.items() if k != "key"})
    assert lv["language"] == "lv"
    assert [(f["area"], f["metric"], f["value"], f["source"]) for f in lv["figures"]] == [
        ("LV", "crossing_attempt", 57, "text")
    ]
    assert lv["figures"][0]["period"]["label"] == "day"
    assert [s["signal"] for s in lv["signals"]] == ["incident"]
    pl = on_topic["sg-pl-daily-1"]
    # The feed's own figure wins over the 84 in the text.
    assert [(f["value"], f["source"]) for f in pl["figures"]] == [(90, "feed")]

    def analysed() -> dict[str, Any] | None:
        r = api.get("/api/v1/reports/vrs-lv-daily-1")
        body: dict[str, Any] | None = r.json() if r.status_code == 200 else None
        return body if body and body.get("analysis") else None

    wait_until(analysed, 30, "the API to serve the report with its analysis")
    body = analysed()
    assert body is not None
    assert body["title"] == "Diennakts situācija uz robežas"
    assert body["analysis"]["figures"][0]["value"] == 57
    assert body["analysis"]["extractor"].startswith("bw-reports/")
    recent = api.get("/api/v1/reports/recent", params={"country": "PL"}).json()
    assert [r["report_id"] for r in recent] == ["sg-pl-daily-1"]
    assert recent[0]["analysis"]["figures"][0]["source"] == "feed"
    assert api.get("/api/v1/reports/no-such-report").status_code == 404
