"""GET /api/v1/state?at=: the picture at past hours, against a brute-force rebuild.

Events with past event times go through the real ingest, the real aggregator
worker and the real broker; alert transitions with past times are written to
the alerts topic as the aggregator would. The test then rebuilds, from the raw
events and transitions it sent alone, the picture at several hours of the last
7 days, and compares it with what the API serves: before and after a restart
of the API (the hours older than a state's 24 come only from
``bw.section-hours``, so a restarted API shows them only if that topic works).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from schemas.models import KINDS, SEVERITY_ORDER, Alert, SectionHour
from services.aggregator.rules import Measures, level_for, load_rules
from services.api.app import create_app as create_api
from services.api.settings import ApiSettings
from services.common.catalogue import Catalogue
from services.common.kafka import make_consumer, make_producer
from services.common.settings import DEFAULT_CONFIG_DIR
from tests.integration.conftest import Deployment, Worker, event, wait_until

pytestmark = pytest.mark.integration

HOUR = 3600
SECTIONS = ("LV-SIL", "LT-ADU", "PL-BIA")
CATALOGUE = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")
RULES = load_rules(DEFAULT_CONFIG_DIR / "rules.yaml")


def _events(now: float, rng: random.Random) -> list[dict[str, Any]]:
    """7 days of each section, in event-time order: a detection every hour (so no
    sensor is ever silent), crossing attempts that swell at night and in two bursts,
    some incidents, humanitarian cases and military activity."""
    out = []
    # 7 days: older events would be counted and expired at once (the aggregator keeps
    # 7 d + grace), so they never reach any picture.
    first = int(now // HOUR) * HOUR - 168 * HOUR
    for h in range(168):
        start = first + h * HOUR
        for sid in SECTIONS:
            t = min(start + rng.uniform(0, HOUR - 1), now - 60)
            out.append(event(sid, "detection", rng.randint(1, 3), _dt(t)))
            crossings = rng.choice((0, 0, 1, 2)) + (3 if h % 24 < 6 else 0)
            if sid == "LV-SIL" and h in (100, 101):
                crossings += 30  # a burst: crossings-1h, surge
            if crossings:
                out.append(event(sid, "crossing_attempt", crossings, _dt(t + 1)))
            if rng.random() < 0.05:
                out.append(event(sid, "incident", 1, _dt(t + 2)))
            if rng.random() < 0.02:
                out.append(
                    event(sid, rng.choice(("humanitarian", "military_activity")), 1, _dt(t + 3))
                )
    out.sort(key=lambda e: e["observed_at"])
    return [e for e in out if _ts(e["observed_at"]) <= now - 30]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _transitions(now: float) -> list[dict[str, Any]]:
    """Past alert transitions, as the aggregator would have published them."""

    def t(aid: str, seq: int, status: str, severity: str, started: float, at: float) -> Alert:
        rule, sid, _ = aid.split(".")
        return Alert(
            alert_id=aid,
            seq=seq,
            rule=rule,
            section_id=sid,
            country=sid[:2],
            status=status,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            value=60,
            threshold=50,
            window="24h",
            started_at=_dt(started),
            updated_at=_dt(at),
            resolved_at=_dt(at) if status == "resolved" else None,
            summary=f"{sid}: test transition {seq}",
        )

    a, b = "hist.LV-SIL.1", "hist.PL-BIA.1"
    base = int(now // HOUR) * HOUR
    return [
        t(a, 1, "firing", "medium", base - 120 * HOUR, base - 120 * HOUR + 600),
        t(a, 2, "firing", "high", base - 120 * HOUR, base - 80 * HOUR),
        t(a, 3, "resolved", "high", base - 120 * HOUR, base - 40 * HOUR + 1),
        t(b, 1, "firing", "critical", base - 30 * HOUR, base - 30 * HOUR),
    ]  # type: ignore[return-value]


def _brute_force(
    events: list[dict[str, Any]], transitions: list[Alert], at: float
) -> dict[str, Any]:
    """The picture at ``at`` from the raw events and transitions alone: every hour
    that started before ``at`` counts whole; the level is what the rules' ladders
    give the windowed counts; firing = the latest transition by ``at`` fires."""
    current = math.floor((at - 0.5) / HOUR) * HOUR  # the last hour started before at
    sections: dict[str, Any] = {}
    for sid in SECTIONS:
        mine = [e for e in events if e["section_id"] == sid]
        hours: dict[int, dict[str, int]] = {}
        last: dict[str, float] = {}
        for e in mine:
            ts = _ts(e["observed_at"])
            start = int(ts // HOUR) * HOUR
            if start > current:
                continue
            hours.setdefault(start, {})
            hours[start][e["kind"]] = hours[start].get(e["kind"], 0) + e["count"]
            last[e["kind"]] = max(last.get(e["kind"], 0.0), ts)

        def total(window_hours: int, hours: dict[int, dict[str, int]] = hours) -> dict[str, int]:
            low = current - (window_hours - 1) * HOUR
            return {
                k: sum(c.get(k, 0) for s, c in hours.items() if low <= s <= current) for k in KINDS
            }

        measures = Measures(hours, at - 0.5, HOUR, last, min(hours, default=at))
        level = "low"
        section = CATALOGUE[sid]
        for rule in RULES:
            if not rule.applies_to(section):
                continue
            value, ladder = rule.assess(measures)
            held = level_for(value, ladder, None, rule.hysteresis)
            if held and SEVERITY_ORDER[held[0]] > SEVERITY_ORDER[level]:
                level = held[0]
        sections[sid] = {
            "counts_1h": total(1),
            "counts_24h": total(24),
            "counts_7d": total(168),
            "level": level,
        }
    firing = set()
    for aid in {t.alert_id for t in transitions}:
        before = [t for t in transitions if t.alert_id == aid and t.updated_at.timestamp() <= at]
        if before and max(before, key=lambda t: t.seq).status == "firing":
            firing.add((aid, max(t.seq for t in before)))
    return {"sections": sections, "firing": firing}


def _served(api: TestClient, at: float) -> dict[str, Any]:
    resp = api.get("/api/v1/state", params={"at": _dt(at).isoformat()})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"at", "sections", "countries", "firing_alerts"}
    by_id = {s["section_id"]: s for s in body["sections"]}
    return {
        "sections": {
            sid: {k: by_id[sid][k] for k in ("counts_1h", "counts_24h", "counts_7d", "level")}
            for sid in SECTIONS
        },
        "firing": {(a["alert_id"], a["seq"]) for a in body["firing_alerts"]},
        "body": body,
    }


class Apis:
    """In-process APIs with their lifespan running, that a test can stop and start."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.running: list[TestClient] = []

    def start(self) -> TestClient:
        settings = ApiSettings(
            kafka_bootstrap=self.dep.bootstrap, topic_prefix=self.dep.prefix, auth_enabled=False
        )
        client = TestClient(create_api(settings))
        client.__enter__()
        self.running.append(client)
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "API view ready")
        return client

    def stop(self, client: TestClient) -> None:
        self.running.remove(client)
        client.__exit__(None, None, None)


@pytest.fixture
def apis(deployment: Deployment) -> Iterator[Apis]:
    runner = Apis(deployment)
    try:
        yield runner
    finally:
        for client in list(runner.running):
            runner.stop(client)


def _counted(worker: Worker) -> float:
    return sum(
        float(line.split()[-1])
        for line in worker.metrics().splitlines()
        if line.startswith("bw_aggregator_events_counted_total{")
    )


async def _produce_alerts(dep: Deployment, alerts: list[Alert]) -> None:
    producer = make_producer(dep.settings())
    await producer.start()
    try:
        for a in alerts:
            await producer.send_and_wait(
                dep.prefix + "alerts", key=a.alert_id.encode(), value=a.model_dump_json().encode()
            )
    finally:
        await producer.stop()


async def _oldest_hour_in_states(dep: Deployment) -> float:
    """The oldest hour that any record of the section-state topic carries."""
    consumer = make_consumer(dep.settings(), dep.prefix + "section-state")
    await consumer.start()
    oldest = math.inf
    try:
        while True:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=10)
            if not batch:
                return oldest
            for records in batch.values():
                for r in records:
                    for point in orjson.loads(r.value)["hourly"]:
                        oldest = min(oldest, _ts(point["start"]))
    finally:
        await consumer.stop()


async def _hour_records(dep: Deployment) -> list[Any]:
    consumer = make_consumer(dep.settings(), dep.prefix + "section-hours")
    await consumer.start()
    out: list[Any] = []
    try:
        while True:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=10)
            if not batch:
                return out
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()


def test_the_picture_at_past_hours_equals_a_brute_force_rebuild_and_survives_a_restart(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    apis: Apis,
) -> None:
    now = time.time()
    events = _events(now, random.Random(13))
    transitions = _transitions(now)
    worker = start_worker()
    api = apis.start()
    asyncio.run(_produce_alerts(deployment, transitions))
    for first in range(0, len(events), 400):  # in event-time order, as a backfill must be
        resp = ingest.post("/v1/field-events", json=events[first : first + 400])
        assert resp.status_code == 202 and resp.json()["rejected"] == [], resp.text
    wait_until(lambda: _counted(worker) == len(events), 60, f"{len(events)} events counted")

    base = int(now // HOUR) * HOUR
    # On the hour and inside one; the 1 h burst (hours 100-101 of 168 = -68 h); the
    # alert's changes (-120 h, -80 h, -40 h); the oldest hour the slider reaches.
    ats = [base - h * HOUR for h in (1, 5, 24, 30, 40, 66, 67, 80, 100, 150)]
    ats += [
        base - 40 * HOUR + 1,
        base - 55 * HOUR + 1800,
        math.ceil((now - 7 * 86400) / HOUR) * HOUR + HOUR,
    ]
    expected = {at: _brute_force(events, transitions, at) for at in ats}

    def matches(client: TestClient) -> bool:
        return all(
            {k: v for k, v in _served(client, at).items() if k != "body"} == expected[at]
            for at in ats
        )

    wait_until(lambda: matches(api), 30, "the API's past pictures equal the brute force")
    for at in ats:
        served = _served(api, at)
        assert served["sections"] == expected[at]["sections"], _dt(at)
        assert served["firing"] == expected[at]["firing"], _dt(at)
    # The history is not flat: levels, counts and alerts differ between hours.
    assert len({str(expected[at]["sections"]) for at in ats}) >= len(ats) - 2
    assert len({s["level"] for e in expected.values() for s in e["sections"].values()}) >= 2
    assert any(e["firing"] for e in expected.values())
    assert any(not e["firing"] for e in expected.values())
    # The roll-ups sum the sections at that hour; firing ids are listed on their section.
    body = _served(api, base - 30 * HOUR)["body"]
    [pl] = [c for c in body["countries"] if c["country"] == "PL"]
    pl_sections = [s for s in body["sections"] if s["country"] == "PL"]
    assert pl["counts_24h"] == {k: sum(s["counts_24h"][k] for s in pl_sections) for k in KINDS}
    [bia] = [s for s in body["sections"] if s["section_id"] == "PL-BIA"]
    assert bia["firing_alerts"] == ["hist.PL-BIA.1"] and pl["firing_alerts"] == 1
    # Without at: the live picture, as before.
    live = api.get("/api/v1/state").json()
    assert set(live) == {"sections", "countries", "firing_alerts"}

    # Bad at: 422 naming the field and the problem.
    for bad, problem in (
        (_dt(now + 3600).isoformat(), "in the future"),
        (_dt(now - 8 * 86400).isoformat(), "older than the 7 days"),
        ("2026-13-01T00:00:00Z", "not a valid date-time"),
        ("last tuesday", "RFC 3339"),
        ("2026-11-30T10:00:00", "RFC 3339"),
    ):
        resp = api.get("/api/v1/state", params={"at": bad})
        assert resp.status_code == 422, (bad, resp.text)
        [error] = resp.json()["errors"]
        assert error["field"] == "query.at" and problem in error["reason"], (bad, error)

    # On the wire: a record for each (section, hour) older than the 24 hours a state
    # carries, keyed and stamped with the hour's end (retention counts from it),
    # matching the contract; the last 24 hours are the states' (none of them here,
    # unless the clock passed an hour meanwhile).
    records = asyncio.run(_hour_records(deployment))
    hours_posted = {(e["section_id"], int(_ts(e["observed_at"]) // HOUR) * HOUR) for e in events}
    docs = [SectionHour.model_validate_json(r.value) for r in records]
    on_wire = {(d.section_id, int(d.start.timestamp())) for d in docs}
    assert on_wire >= {(sid, h) for sid, h in hours_posted if h < base - 23 * HOUR}
    assert max(h for _, h in on_wire) <= base - 22 * HOUR
    for r, d in zip(records, docs, strict=True):
        start = int(d.start.timestamp())
        assert r.key == f"{d.section_id}|{start}".encode() == d.key.encode()
        assert r.timestamp == (start + HOUR) * 1000
    # One record per batch that touched an hour, never one per event: an hour's events
    # reach the worker in one or two posts (they are in time order), so one or two.
    per_hour = Counter((d.section_id, d.start) for d in docs)
    assert set(per_hour.values()) <= {1, 2}, per_hour.most_common(3)

    # A restarted API rebuilds the same history from Kafka. Most of those hours were
    # never in any state (a state carries its last 24 hours, all at wall-clock time):
    # they can only come from bw.section-hours.
    assert asyncio.run(_oldest_hour_in_states(deployment)) >= base - 24 * HOUR
    apis.stop(api)
    api = apis.start()
    for at in ats:
        served = _served(api, at)
        assert served["sections"] == expected[at]["sections"], _dt(at)
        assert served["firing"] == expected[at]["firing"], _dt(at)
    detail = api.get("/api/v1/sections/LV-SIL", params={"hours": 168}).json()
    assert len(detail["hourly"]) == 168
    assert detail["history_since"] is not None
    assert _ts(detail["history_since"]) <= base - 167 * HOUR
