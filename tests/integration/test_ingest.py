"""The ingest door on the real broker: batches, outcomes per item, duplicates, reports,
dead letters, limits, rate limit, a broker that is not there, metrics.

Helpers and fixtures here are shared by the other ``test_ingest*`` / ``test_auth*``
modules.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from schemas.models import DeadLetter, FieldEventBatch, ReportEvent
from services.common.auth import create_token
from services.common.kafka import ensure_topics, make_consumer
from services.common.settings import CommonSettings
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.runtime.broker import free_port
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

SECTIONS = ["LV-KRA", "LV-SIL", "LT-MED", "PL-KUZ", "PL-BIA"]


# --- helpers (shared) ----------------------------------------------------------------


def field_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "kind": "crossing_attempt",
        "section_id": "LV-KRA",
        "observed_at": (datetime.now(UTC) - timedelta(minutes=3)).isoformat(),
        "count": 4,
        "source": {"type": "thermal_camera", "id": "LV-KRA-TC-04"},
        "confidence": "high",
    }
    event.update(overrides)
    return event


def report_event(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "report_id": f"vpd-{uuid.uuid4().hex[:12]}",
        "source": {"name": "State Border Guard", "type": "official", "url": "https://rs.gov.lv/"},
        "country": "LV",
        "published_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "title": "Attempts in the last 24 hours",
        "text": "In the last 24 hours 57 attempts to cross the border were prevented.",
        "language": "lv",
        "figures": [{"kind": "crossing_attempt", "count": 57, "section_id": "LV-KRA"}],
    }
    report.update(overrides)
    return report


def ndjson(items: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(i) for i in items) + b"\n"


def read_topic(
    settings: CommonSettings, topic: str, min_records: int = 1, timeout: float = 10.0
) -> list[Any]:
    """Records of ``topic`` from the beginning: until ``min_records`` arrived and then a
    short quiet spell (a duplicate would show up right behind), or ``timeout``."""

    async def read() -> list[Any]:
        consumer = make_consumer(settings, topic)
        await consumer.start()
        out: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=300), timeout=5)
                for records in batch.values():
                    out += records
                if len(out) >= min_records:
                    deadline = min(deadline, loop.time() + 1.0)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


def event_ids_in(records: list[Any]) -> Counter[str]:
    """Event ids of ``bw.field-events`` records (every record validated as the contract)."""
    ids: Counter[str] = Counter()
    for record in records:
        envelope = FieldEventBatch.model_validate_json(record.value)
        assert record.key == envelope.section_id.encode()
        ids.update(str(e.event_id) for e in envelope.events)
    return ids


@dataclass
class Tokens:
    """One token per scope, plus one with every scope, stored as hashes in ``file``."""

    file: Path
    field: str
    report: str
    admin: str
    read: str
    everything: str

    @staticmethod
    def create(directory: Path) -> Tokens:
        path = directory / "tokens.json"
        return Tokens(
            file=path,
            field=create_token(path, ["ingest:field"], "field"),
            report=create_token(path, ["ingest:report"], "report"),
            admin=create_token(path, ["admin"], "admin"),
            read=create_token(path, ["read", "ack"], "read"),
            everything=create_token(
                path, ["ingest:field", "ingest:report", "read", "ack", "admin"], "all"
            ),
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Door:
    """An ingest app on the session broker with its own topics and tokens."""

    client: TestClient
    kafka: CommonSettings
    tokens: Tokens

    def topic(self, suffix: str) -> str:
        return self.kafka.topic_prefix + suffix


def open_door(
    bootstrap: str, workdir: Path, **overrides: Any
) -> tuple[IngestSettings, CommonSettings, Tokens]:
    prefix = f"i{uuid.uuid4().hex[:10]}."
    kafka = CommonSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    asyncio.run(ensure_topics(kafka, 3))
    tokens = Tokens.create(workdir)
    options: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": prefix,
        "tokens_file": tokens.file,
        "rate_limit_per_second": 0,
    }
    options.update(overrides)
    return IngestSettings(**options), kafka, tokens


@pytest.fixture(scope="module")
def door(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    settings, common, tokens = open_door(kafka, tmp_path_factory.mktemp("door"))
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        yield Door(client, common, tokens)


# --- batches and outcomes ---------------------------------------------------------------


def test_one_event_an_array_and_ndjson_are_accepted_and_in_kafka_once(door: Door) -> None:
    single = field_event()
    array = [field_event(section_id=s) for s in SECTIONS[:3]]
    lines = [field_event(section_id="PL-BIA", kind="detection") for _ in range(3)]
    headers = bearer(door.tokens.field)

    r1 = door.client.post("/v1/field-events", json=single, headers=headers)
    r2 = door.client.post("/v1/field-events", json=array, headers=headers)
    r3 = door.client.post(
        "/v1/field-events",
        content=ndjson(lines),
        headers={**headers, "content-type": "application/x-ndjson"},
    )

    for resp, sent in ((r1, [single]), (r2, array), (r3, lines)):
        assert resp.status_code == 202, resp.text
        assert resp.json() == {
            "accepted": [e["event_id"] for e in sent],
            "duplicate": [],
            "rejected": [],
        }
    posted = {e["event_id"] for e in [single, *array, *lines]}
    in_kafka = event_ids_in(read_topic(door.kafka, door.topic("field-events"), 5))
    assert set(in_kafka) == posted
    assert set(in_kafka.values()) == {1}


def test_a_resent_event_is_a_duplicate_and_not_produced_again(door: Door) -> None:
    headers = bearer(door.tokens.field)
    first = [field_event(section_id="LT-MED") for _ in range(3)]
    fresh = field_event(section_id="LT-MED")
    repeated = field_event(section_id="LT-MED")

    before = door.client.post("/v1/field-events", json=first, headers=headers)
    again = door.client.post(
        "/v1/field-events", json=[*first, fresh, repeated, repeated], headers=headers
    )

    assert before.status_code == 202
    assert again.status_code == 202, again.text
    assert again.json() == {
        "accepted": [fresh["event_id"], repeated["event_id"]],
        "duplicate": [e["event_id"] for e in first] + [repeated["event_id"]],
        "rejected": [],
    }
    in_kafka = event_ids_in(read_topic(door.kafka, door.topic("field-events"), 1))
    for event in [*first, fresh, repeated]:
        assert in_kafka[event["event_id"]] == 1, event["event_id"]


def test_concurrent_posts_of_the_same_batch_produce_it_once(door: Door) -> None:
    batch = [field_event(section_id="PL-KUZ") for _ in range(50)]
    ids = [e["event_id"] for e in batch]
    results: list[dict[str, Any]] = []

    def post() -> None:
        resp = door.client.post("/v1/field-events", json=batch, headers=bearer(door.tokens.field))
        assert resp.status_code == 202, resp.text
        results.append(resp.json())

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert len(results) == 6
    accepted = Counter(i for r in results for i in r["accepted"])
    assert accepted == Counter(ids), "each event accepted by exactly one of the posts"
    for r in results:
        assert sorted(r["accepted"] + r["duplicate"]) == sorted(ids)
    in_kafka = event_ids_in(read_topic(door.kafka, door.topic("field-events"), 1))
    assert all(in_kafka[i] == 1 for i in ids)


def test_a_mixed_batch_names_each_refusal_and_dead_letters_it(door: Door) -> None:
    good = field_event()
    no_count = field_event()
    del no_count["count"]
    personal = field_event(attributes={"passport_no": "LV1234567"})
    unknown = field_event(section_id="EE-NAR")
    future = field_event(observed_at=(datetime.now(UTC) + timedelta(minutes=10)).isoformat())
    body = ndjson([good, no_count, personal, unknown, future])

    resp = door.client.post(
        "/v1/field-events",
        content=body,
        headers={**bearer(door.tokens.field), "content-type": "application/x-ndjson"},
    )

    assert resp.status_code == 202, resp.text
    result = resp.json()
    assert result["accepted"] == [good["event_id"]]
    assert [(r["index"], r["field"]) for r in result["rejected"]] == [
        (1, "count"),
        (2, "attributes"),
        (3, "section_id"),
        (4, "observed_at"),
    ]
    assert "personal data" in result["rejected"][1]["reason"]
    assert result["rejected"][2]["reason"] == "unknown section 'EE-NAR'"
    assert "in the future" in result["rejected"][3]["reason"]

    def letters() -> list[dict[str, Any]]:
        resp = door.client.get("/v1/dead-letter", headers=bearer(door.tokens.admin))
        assert resp.status_code == 200, resp.text
        return [
            item
            for item in resp.json()["items"]
            if item["item_id"] in {no_count["event_id"], personal["event_id"]}
        ]

    wait_until(lambda: len(letters()) == 2, 15, "two dead letters")
    by_id = {item["item_id"]: DeadLetter.model_validate(item) for item in letters()}
    letter = by_id[personal["event_id"]]
    assert letter.route == "/v1/field-events"
    assert letter.index == 2
    assert letter.problems[0].field == "attributes"
    assert letter.original_encoding == "utf-8"
    assert letter.original.encode() == body.splitlines()[2]  # the exact bytes sent
    field_token_id = door.tokens.field.split("_")[1]
    assert letter.token_id == field_token_id
    dead = read_topic(door.kafka, door.topic("dead-letter"), 4)
    raw = b"".join(r.value for r in dead)
    assert door.tokens.field.encode() not in raw, "a token must never reach the dead letters"
    assert field_token_id.encode() in raw


def test_an_unreadable_body_is_refused_whole_and_dead_lettered(door: Door) -> None:
    garbage = b"\xff\xfe not json at all \x00"

    resp = door.client.post(
        "/v1/field-events",
        content=garbage,
        headers={**bearer(door.tokens.field), "content-type": "application/json"},
    )

    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "(body)"

    def letter() -> dict[str, Any] | None:
        items = door.client.get("/v1/dead-letter", headers=bearer(door.tokens.admin)).json()
        return next((i for i in items["items"] if i["original_encoding"] == "base64"), None)

    wait_until(letter, 15, "the body's dead letter")
    found = letter()
    assert found is not None and found["index"] is None
    assert base64.b64decode(found["original"]) == garbage


def test_validation_beyond_the_schema(door: Door) -> None:
    now = datetime.now(UTC)
    cases = [
        (field_event(observed_at=(now + timedelta(minutes=6)).isoformat()), "observed_at"),
        (field_event(observed_at=(now - timedelta(days=9)).isoformat()), "observed_at"),
        (field_event(section_id="LV-NOPE"), "section_id"),
        (field_event(attributes={f"k{i}": i for i in range(33)}), "attributes"),
        (field_event(attributes={"terrain": "x" * 257}), "attributes.terrain"),
        (field_event(attributes={"x" * 65: 1}), "attributes." + "x" * 65 + ".[key]"),
        (field_event(attributes={"Phone-Number": "1"}), "attributes"),
        (field_event(source={"type": "thermal_camera", "id": "x" * 65}), "source.id"),
        (field_event(count=10_001), "count"),
    ]
    fine = [
        field_event(observed_at=(now + timedelta(minutes=4)).isoformat()),
        field_event(observed_at=(now - timedelta(days=7)).isoformat()),
        field_event(attributes={f"k{i}": i for i in range(32)}),
        field_event(attributes={"terrain": "swamp", "group_size_estimate": 12}),
    ]

    resp = door.client.post(
        "/v1/field-events",
        json=[e for e, _ in cases] + fine,
        headers=bearer(door.tokens.field),
    )

    assert resp.status_code == 202, resp.text
    result = resp.json()
    assert result["accepted"] == [e["event_id"] for e in fine]
    assert [(r["index"], r["field"]) for r in result["rejected"]] == [
        (i, f) for i, (_, f) in enumerate(cases)
    ]
    reasons = [r["reason"] for r in result["rejected"]]
    assert "personal data" in reasons[6] and "never a person's identity" in reasons[6]


# --- limits -----------------------------------------------------------------------------


@pytest.fixture
def small_door(kafka: str, tmp_path: Path) -> Iterator[Door]:
    settings, common, tokens = open_door(
        kafka, tmp_path, max_events=5, max_body_bytes=4096, rate_limit_per_second=0
    )
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        yield Door(client, common, tokens)


def test_limits_are_named_in_413_and_content_types_checked(small_door: Door) -> None:
    headers = bearer(small_door.tokens.field)
    post = small_door.client.post

    too_many = post(
        "/v1/field-events",
        content=ndjson([field_event() for _ in range(6)]),
        headers={**headers, "content-type": "application/x-ndjson"},
    )
    too_large = post(
        "/v1/field-events",
        content=b"[" + b" " * 5000 + b"]",
        headers={**headers, "content-type": "application/json"},
    )
    # Chunked, no Content-Length: refused while streaming.
    streamed = post(
        "/v1/field-events",
        content=iter([b"[" + b" " * 3000, b" " * 3000, b"]"]),
        headers={**headers, "content-type": "application/json"},
    )
    form = post(
        "/v1/field-events",
        content=b"kind=detection",
        headers={**headers, "content-type": "application/x-www-form-urlencoded"},
    )
    at_limit = post("/v1/field-events", json=[field_event() for _ in range(5)], headers=headers)

    assert too_many.status_code == 413
    assert too_many.json()["limit"] == 5
    assert "5-event limit" in too_many.json()["detail"]
    for resp in (too_large, streamed):
        assert resp.status_code == 413, resp.text
        assert resp.json()["limit"] == 4096
        assert "4096-byte limit" in resp.json()["detail"]
    assert form.status_code == 415
    assert at_limit.status_code == 202
    assert len(at_limit.json()["accepted"]) == 5


def test_rate_limit_per_token(kafka: str, tmp_path: Path) -> None:
    settings, _, tokens = open_door(kafka, tmp_path, rate_limit_per_second=0.5, rate_limit_burst=2)
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        first = [
            client.post("/v1/field-events", json=field_event(), headers=bearer(tokens.field))
            for _ in range(3)
        ]
        other = client.post(
            "/v1/field-events", json=field_event(), headers=bearer(tokens.everything)
        )
        metrics = client.get("/metrics").text

    assert [r.status_code for r in first] == [202, 202, 429]
    assert int(first[2].headers["retry-after"]) >= 1
    assert "requests/s" in first[2].json()["detail"]
    assert other.status_code == 202, "another token has its own bucket"
    assert "bw_ingest_rate_limited_total 1.0" in metrics


# --- reports ----------------------------------------------------------------------------


def test_a_report_is_produced_keyed_by_country_once(door: Door) -> None:
    headers = bearer(door.tokens.report)
    report = report_event(country="PL", figures=[])
    lithuanian = report_event(country="LT", language="lt")

    resp = door.client.post("/v1/reports", json=[report, lithuanian], headers=headers)
    again = door.client.post("/v1/reports", json=report, headers=headers)

    assert resp.status_code == 202, resp.text
    assert resp.json() == {
        "accepted": [report["report_id"], lithuanian["report_id"]],
        "duplicate": [],
        "rejected": [],
    }
    assert again.json()["duplicate"] == [report["report_id"]]
    records = read_topic(door.kafka, door.topic("report-events"), 2)
    by_id = {ReportEvent.model_validate_json(r.value).report_id: r for r in records}
    assert set(by_id) == {report["report_id"], lithuanian["report_id"]}
    assert by_id[report["report_id"]].key == b"PL"
    assert by_id[lithuanian["report_id"]].key == b"LT"


def test_reports_are_checked_for_size_personal_data_and_sections(door: Door) -> None:
    headers = bearer(door.tokens.report)
    cases = [
        (report_event(text="ā" * 50_001), "text"),  # 100,002 bytes of UTF-8
        (
            report_event(
                figures=[{"kind": "apprehension", "count": 3, "attributes": {"full_name": "x"}}]
            ),
            "figures.0.attributes",
        ),
        (
            report_event(figures=[{"kind": "detection", "count": 1, "section_id": "LV-NOPE"}]),
            "figures.0.section_id",
        ),
        (report_event(source={"name": "Blog", "type": "rumour"}), "source.type"),
        (
            report_event(published_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
            "published_at",
        ),
    ]
    ok = report_event(text="ā" * 50_000, source={"name": "Delfi", "type": "media"})

    resp = door.client.post("/v1/reports", json=[c for c, _ in cases] + [ok], headers=headers)

    assert resp.status_code == 202, resp.text
    result = resp.json()
    assert result["accepted"] == [ok["report_id"]]
    assert [(r["index"], r["field"]) for r in result["rejected"]] == [
        (i, f) for i, (_, f) in enumerate(cases)
    ]
    assert all(r["report_id"] == cases[r["index"]][0]["report_id"] for r in result["rejected"])
    assert "personal data" in result["rejected"][1]["reason"]


# --- a broker that is not there ---------------------------------------------------------


def test_without_a_broker_ingest_answers_503_fast(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    tokens = Tokens.create(tmp_path)
    settings = IngestSettings(
        kafka_bootstrap=nobody, tokens_file=tokens.file, rate_limit_per_second=0
    )
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        post = client.post("/v1/field-events", json=field_event(), headers=bearer(tokens.field))
        report = client.post("/v1/reports", json=report_event(), headers=bearer(tokens.report))
        letters = client.get("/v1/dead-letter", headers=bearer(tokens.admin))
        took = time.monotonic() - started
        ready = client.get("/readyz")

    for resp in (post, report, letters):
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "2"
    assert took < 8.0
    assert ready.status_code == 503


# --- metrics ----------------------------------------------------------------------------


def test_metrics_count_outcomes_and_time_requests(door: Door) -> None:
    headers = bearer(door.tokens.field)
    event = field_event(kind="humanitarian")
    door.client.post("/v1/field-events", json=[event, field_event(count=0)], headers=headers)
    door.client.post("/v1/field-events", json=event, headers=headers)
    door.client.post("/v1/field-events", json=event)  # 401

    text = door.client.get("/metrics").text

    for needle in (
        'bw_ingest_events_accepted_total{kind="humanitarian"}',
        'bw_ingest_events_duplicate_total{kind="humanitarian"}',
        'bw_ingest_events_rejected_total{reason="schema"}',
        'bw_ingest_request_seconds_bucket{le="0.5",route="/v1/field-events",status="202"}',
        'bw_ingest_request_seconds_count{route="/v1/field-events",status="401"}',
        "bw_ingest_produce_seconds_count",
        'bw_ingest_batch_events_bucket{le="10.0",route="/v1/field-events"}',
    ):
        assert needle in text, needle
