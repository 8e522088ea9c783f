"""Discrepancy alerts and the closure-criteria assessment on the real broker:
ingest -> aggregator (report agent + assessor) -> bw.alerts / bw.assessment -> API."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.models import CountryAssessment
from tests.integration.conftest import Deployment, Worker, event, wait_until

pytestmark = pytest.mark.integration

LV_DAILY = (
    "Pēdējās diennakts laikā nelikumīgi šķērsot valsts robežu atturētas 57 personas. "
    "Robežsargiem nebija jāpielieto speciālie līdzekļi."
)
MILITARY = "The Belarusian side brought the migrants to the border in military vehicles."


def official(report_id: str, text: str, language: str, at: datetime) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "source": {"name": "Valsts robežsardze", "type": "official"},
        "country": "LV",
        "published_at": at.isoformat(),
        "title": "Situācija uz robežas",
        "language": language,
        "text": text,
    }


def discrepancy(api: TestClient, status: str) -> dict[str, Any] | None:
    alerts = api.get("/api/v1/alerts", params={"country": "LV", "status": status}).json()
    found = [a for a in alerts if a["rule"] == "official-vs-field"]
    return found[0] if found else None


def test_a_discrepancy_alert_fires_and_resolves(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    worker = start_worker()
    now = datetime.now(UTC).replace(microsecond=0)
    resp = ingest.post(
        "/v1/field-events",
        json=[event("LV-KRA", "crossing_attempt", 2, now - timedelta(seconds=1))],
    )
    assert resp.status_code == 202, resp.text
    resp = ingest.post("/v1/reports", json=[official("vrs-1", LV_DAILY, "lv", now)])
    assert resp.status_code == 202, resp.text

    try:
        wait_until(lambda: discrepancy(api, "firing"), 60, "the discrepancy alert to fire")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{worker.log()}") from None
    fired = discrepancy(api, "firing")
    assert fired is not None
    assert (fired["alert_id"], fired["value"], fired["threshold"]) == (
        "official-vs-field.LV-ALL.1",
        2,
        57,
    )
    assert "differs from 2 counted in the field" in fired["summary"]

    # The field catches up: 52 against 57 agrees.
    resp = ingest.post(
        "/v1/field-events",
        json=[event("LV-SIL", "crossing_attempt", 50, now - timedelta(seconds=1))],
    )
    assert resp.status_code == 202, resp.text
    wait_until(lambda: discrepancy(api, "resolved"), 60, "the discrepancy alert to resolve")
    detail = api.get("/api/v1/alerts/official-vs-field.LV-ALL.1").json()
    assert [t["status"] for t in detail["transitions"]] == ["firing", "resolved"]


def test_the_assessment_changes_when_a_military_activity_report_arrives(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    worker = start_worker()

    def lv() -> dict[str, Any] | None:
        r = api.get("/api/v1/assessment/LV")
        return r.json() if r.status_code == 200 else None

    wait_until(lv, 60, "a first assessment of LV")
    first = lv()
    assert first is not None and first["stage"] == "monitoring"
    CountryAssessment.model_validate(first)
    assert {a["country"] for a in api.get("/api/v1/assessment").json()} == {"LV", "LT", "PL"}

    now = datetime.now(UTC).replace(microsecond=0)
    reports = [official(f"mil-{i}", MILITARY, "en", now - timedelta(minutes=i)) for i in range(2)]
    assert ingest.post("/v1/reports", json=reports).status_code == 202

    def military() -> dict[str, Any] | None:
        a = lv()
        if not a:
            return None
        f = next(x for x in a["factors"] if x["factor"] == "military_risk")
        return f if f["level"] == "high" else None

    wait_until(military, 60, "military risk to reach high")
    factor = military()
    assert factor is not None and sorted(factor["evidence"]["reports"]) == ["mil-0", "mil-1"]
    after = lv()
    assert after is not None and after["stage"] == "restrictions"
    assert "close" not in after["summary"].lower().replace("closure", "")
    metrics = worker.metrics()
    assert re.search(
        r'bw_assessment_factor_level\{country="LV",factor="military_risk"\} 3\.0', metrics
    ), metrics[-2000:]
