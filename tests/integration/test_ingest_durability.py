"""The broker goes away in the middle of a stream of posts, and comes back.

Every answer is 202 or 503 (with Retry-After, within the produce timeout); no
hang, no 500, no false 202: after the broker returns and ingest accepts again
by itself, every event that got a 2xx is in the topic, exactly once after
dedupe by event_id.

The test runs its own broker (not the session's) on fixed ports with its own
data directory, so it can stop it and start it again on the same address.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.models import FieldEventBatch
from services.common.kafka import ensure_topics, make_consumer
from services.common.settings import CommonSettings
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.runtime.broker import EmbeddedKafka, free_port
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

PRODUCE_TIMEOUT = 2.5
SECTIONS = ["LV-KRA", "LT-MED", "PL-KUZ", "PL-BIA"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    """A broker of this test alone, on ports fixed for its lifetime (so it can restart)."""
    kafka = EmbeddedKafka(
        tmp_path / "kafka", port=free_port(), controller_port=free_port(), heap="384m"
    )
    kafka.start()
    try:
        kafka.wait_ready(timeout=90)
        yield kafka
    finally:
        kafka.stop()


def _batch(n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "event_id": str(uuid.uuid4()),
            "kind": "detection",
            "section_id": SECTIONS[i % len(SECTIONS)],
            "observed_at": now,
            "count": 1,
            "source": {"type": "fence_sensor", "id": "FS-1"},
            "confidence": "medium",
        }
        for i in range(n)
    ]


async def _read_ids(settings: CommonSettings, topic: str, want: set[str]) -> Counter[str]:
    """Every event id on ``topic`` (each record validated), until ``want`` is seen."""
    consumer = make_consumer(settings, topic)
    seen: Counter[str] = Counter()
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        quiet_until = None
        while loop.time() < deadline:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=10)
            for records in batch.values():
                for record in records:
                    envelope = FieldEventBatch.model_validate_json(record.value)
                    assert record.key == envelope.section_id.encode()
                    seen.update(str(e.event_id) for e in envelope.events)
            if want <= seen.keys():
                # Keep reading briefly: late copies would show up right behind.
                quiet_until = quiet_until or loop.time() + 2
                if loop.time() > quiet_until:
                    break
    finally:
        await consumer.stop()
    return seen


def test_broker_outage_gives_2xx_or_503_and_loses_nothing(broker: EmbeddedKafka) -> None:
    kafka = CommonSettings(kafka_bootstrap=broker.bootstrap, topic_prefix="dur.")
    asyncio.run(ensure_topics(kafka, 3))
    settings = IngestSettings(
        kafka_bootstrap=broker.bootstrap,
        topic_prefix="dur.",
        auth_enabled=False,
        produce_timeout=PRODUCE_TIMEOUT,
        rate_limit_per_second=0,
    )
    statuses: Counter[int] = Counter()
    acknowledged: set[str] = set()  # ids some 2xx listed as accepted or duplicate
    posted: set[str] = set()
    slowest = 0.0
    lock = threading.Lock()
    phase = {"name": "before"}
    accepted_after_return = threading.Event()
    stop = threading.Event()

    errors: list[BaseException] = []

    def client_loop(client: TestClient) -> None:
        try:
            post_until_stopped(client)
        except BaseException as exc:  # surfaced by the test thread below
            errors.append(exc)
            stop.set()

    def post_until_stopped(client: TestClient) -> None:
        nonlocal slowest
        while not stop.is_set():
            batch = _batch(10)
            with lock:
                posted.update(e["event_id"] for e in batch)
            # Like a real field unit: resend the same batch until it is acknowledged.
            for _attempt in range(100):
                started = time.monotonic()
                resp = client.post("/v1/field-events", json=batch)
                took = time.monotonic() - started
                with lock:
                    statuses[resp.status_code] += 1
                    slowest = max(slowest, took)
                assert resp.status_code in (202, 503), resp.text
                assert took <= PRODUCE_TIMEOUT + 1.0, f"answer took {took:.1f}s"
                if resp.status_code == 202:
                    body = resp.json()
                    assert sorted(body["accepted"] + body["duplicate"]) == sorted(
                        e["event_id"] for e in batch
                    )
                    with lock:
                        acknowledged.update(body["accepted"] + body["duplicate"])
                    if phase["name"] == "restarted":
                        accepted_after_return.set()
                    break
                assert resp.headers["retry-after"].isdigit()
                time.sleep(0.2)
            time.sleep(0.05)

    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        threads = [threading.Thread(target=client_loop, args=(client,)) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: statuses[202] >= 10, 30, "posts acknowledged before the outage")
            phase["name"] = "stopping"
            broker.stop()
            phase["name"] = "down"
            wait_until(lambda: statuses[503] >= 2, 30, "503 answers while the broker is down")
            broker.start()
            broker.wait_ready(timeout=90)
            phase["name"] = "restarted"
            assert accepted_after_return.wait(60), "ingest did not recover by itself"
            before = statuses[202]
            wait_until(lambda: statuses[202] >= before + 5, 30, "steady 202s after the return")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
            if errors:
                raise errors[0]

    assert set(statuses) <= {202, 503}, statuses
    assert statuses[503] >= 2
    in_topic = asyncio.run(_read_ids(kafka, "dur.field-events", acknowledged))
    missing = acknowledged - in_topic.keys()
    assert not missing, f"{len(missing)} acknowledged events are not in Kafka"
    assert in_topic.keys() <= posted, "the topic holds events nobody posted"
    copies = sum(in_topic.values()) - len(in_topic)
    print(
        f"\nstatuses {dict(statuses)}; slowest answer {slowest:.2f}s; "
        f"{len(acknowledged)} acknowledged events, all in the topic; "
        f"{copies} extra copies before dedupe"
    )
