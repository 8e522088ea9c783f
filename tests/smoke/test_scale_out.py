"""Smoke: one command runs a replicated cluster and several processes of each service.

``borderwatch up --brokers 3 --workers 2 --ingest 2 --api 2``: three KRaft nodes,
topics (and Faust's changelog) with three copies, two aggregator workers in one
consumer group, two ingest and two API processes each behind one port
(SO_REUSEPORT), each also on a port of its own.

- Counts are exact on both API replicas, each of which builds its own view from Kafka.
- Ingest's dedupe cache is per process: a re-post that reaches the other replica is
  produced again, and the aggregator's ``event_id`` dedupe counts it once.
- An alert acknowledged through the shared API port shows as acked on both replicas.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.models import KINDS
from services.common.catalogue import Catalogue
from services.common.kafka import partition_layout
from services.common.settings import DEFAULT_CONFIG_DIR, CommonSettings
from tests.smoke.test_up import Up, processes_with

pytestmark = pytest.mark.smoke

SECTIONS = list(Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml"))


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    started = Up(
        tmp_path / "bw-data",
        "--brokers",
        "3",
        "--workers",
        "2",
        "--ingest",
        "2",
        "--api",
        "2",
        env={"BW_TICK_SECONDS": "1"},
    )
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
        started.kill_everything()


def _call(url: str, token: str, body: Any = None) -> tuple[int, Any]:
    """One request on a new connection (so SO_REUSEPORT may pick any process)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Authorization", f"Bearer {token}")
    if data:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=15) as resp:
        return resp.status, json.loads(resp.read())


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _events(n: int, seed: int, **fixed: Any) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [
        {
            "event_id": str(uuid.uuid4()),
            "kind": rng.choice(KINDS),
            "section_id": rng.choice(SECTIONS),
            "observed_at": (now - timedelta(seconds=rng.uniform(0, 1800))).isoformat(),
            "count": rng.randint(1, 3),
            "source": {"type": "patrol", "id": "P-1"},
            "confidence": "high",
            **fixed,
        }
        for _ in range(n)
    ]


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def test_up_scaled_out_on_three_brokers_counts_exactly_once_everywhere(up: Up) -> None:
    up.wait_for(r"borderwatch is up \((\d+\.\d)s\)", 180)
    took = float(up.wait_for(r"borderwatch is up \((\d+\.\d)s\)", 1).group(1))
    token = up.wait_for(r"Authorization: Bearer (bw_\S+)", 1).group(1)
    bootstrap = up.wait_for(r"Kafka\s+(\S+) \(embedded, KRaft, 3 nodes\)", 1).group(1)
    assert " Topics         replication 3, min.insync.replicas 2 (3 brokers)" in up.output
    own = dict(re.findall(r"((?:ingest|api)-\d) (http://127\.0\.0\.1:\d+)", up.output))
    assert sorted(own) == ["api-1", "api-2", "ingest-1", "ingest-2"], up.output
    ingest = f"http://127.0.0.1:{up.ports['ingest']}"
    api = f"http://127.0.0.1:{up.ports['api']}"
    workers = [f"http://127.0.0.1:{up.ports['aggregator'] + i}" for i in range(2)]

    # Every topic, Faust's changelog and Kafka's own offsets: three copies.
    layout = asyncio.run(partition_layout(CommonSettings(kafka_bootstrap=bootstrap)))
    copies = {topic: len(replicas) for (topic, _), (_, replicas, _) in layout.items()}
    assert "borderwatch-aggregator-section-aggregates-changelog" in copies
    assert set(copies.values()) == {3}, copies

    # The two workers are one consumer group: each owns a share of the sections.
    _wait(
        lambda: (
            all(_metric(w, "bw_aggregator_sections_active ") > 0 for w in workers)
            and sum(_metric(w, "bw_aggregator_sections_active ") for w in workers) == len(SECTIONS)
        ),
        60,
        "both workers to own a share of the sections",
    )

    # 6,000 events through the shared ingest port, one connection per request.
    events = _events(6_000, seed=31)
    for start in range(0, len(events), 300):
        status, body = _call(ingest + "/v1/field-events", token, events[start : start + 300])
        assert status == 202 and len(body["accepted"]) == 300, body
    per_replica = {
        n: _metric(own[n], "bw_ingest_events_accepted_total") for n in own if "ingest" in n
    }
    assert all(v > 0 for v in per_replica.values()), f"one ingest took everything: {per_replica}"

    # The same events to each replica's own port: the other replica's cache does not
    # know them, so it produces them again; the aggregator counts them once.
    again = _events(200, seed=32)
    _, first = _call(own["ingest-1"] + "/v1/field-events", token, again)
    _, other = _call(own["ingest-2"] + "/v1/field-events", token, again)
    _, same = _call(own["ingest-1"] + "/v1/field-events", token, again)
    assert len(first["accepted"]) == 200
    assert len(other["accepted"]) == 200, "ingest-2 cannot know what ingest-1 accepted"
    assert len(same["duplicate"]) == 200, "ingest-1 remembers what it accepted"

    # 30 crossing attempts on one section: the crossings-24h rule fires.
    alarm = _events(30, seed=33, kind="crossing_attempt", section_id="LV-KRA", count=1)
    _call(ingest + "/v1/field-events", token, alarm)
    counted = events + again + alarm
    expected = {sid: dict.fromkeys(KINDS, 0) for sid in SECTIONS}
    for e in counted:
        expected[e["section_id"]][e["kind"]] += e["count"]

    def counts(base: str) -> dict[str, dict[str, int]]:
        return {
            s["section_id"]: s["counts_24h"] for s in _call(base + "/api/v1/sections", token)[1]
        }

    for name in ("api-1", "api-2"):
        _wait(lambda n=name: counts(own[n]) == expected, 90, f"exact counts on {name}")
    duplicates = sum(_metric(w, "bw_aggregator_duplicate_events_total ") for w in workers)
    assert duplicates >= 200, f"the re-posted events were not caught by event_id: {duplicates}"

    alert = _wait(
        lambda: next(
            (
                a
                for a in _call(own["api-1"] + "/api/v1/alerts?status=firing", token)[1]
                if a["section_id"] == "LV-KRA"
            ),
            None,
        ),
        60,
        "the LV-KRA crossings alert to fire",
    )
    status, _ = _call(api + f"/api/v1/alerts/{alert['alert_id']}/ack", token, {"by": "smoke"})
    assert status == 202
    for name in ("api-1", "api-2"):
        _wait(
            lambda n=name: _call(own[n] + f"/api/v1/alerts/{alert['alert_id']}", token)[1][
                "current"
            ]["acked"],
            30,
            f"the ack on {name}",
        )
    print(
        f"\n[figure] up --brokers 3 --workers 2 --ingest 2 --api 2: up in {took:.1f}s; "
        f"events accepted per ingest process {per_replica}; {len(counted):,} distinct events "
        f"counted exactly on both API replicas; {duplicates:.0f} re-posted copies dropped by "
        f"event_id; an ack through the shared port visible on both API replicas"
    )
    stopped = up.stop(signal.SIGTERM, timeout=40)
    assert up.process.returncode == 0, up.output
    time.sleep(0.5)
    assert processes_with(up.marker) == [], "a process outlived `borderwatch up`"
    print(f"[figure] stopped in {stopped:.1f}s")
