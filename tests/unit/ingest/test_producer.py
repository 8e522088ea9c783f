"""Records of field events, and publishing with a deadline (against a stand-in for
aiokafka's producer: these are the rules, the integration tests use real Kafka)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from schemas.models import FieldEvent, FieldEventBatch
from services.common.headers import received_at
from services.ingest.producer import BrokerUnavailable, KafkaGate, Outgoing, section_records
from tests.unit.factories import NOW, field_event, iso


def _events(n: int, **overrides: Any) -> list[FieldEvent]:
    return [FieldEvent.model_validate(field_event(**overrides)) for _ in range(n)]


# --- records ---------------------------------------------------------------------------


def test_one_record_per_section_stamped_with_the_newest_observed_at() -> None:
    kra = [FieldEvent.model_validate(field_event(observed_at=iso(NOW - m * 60))) for m in (9, 2, 5)]
    med = _events(2, section_id="LT-MED")

    records = section_records([kra[0], med[0], kra[1], med[1], kra[2]], record_max_events=100)

    assert [(r.section_id, r.positions) for r in records] == [
        ("LV-KRA", [0, 2, 4]),
        ("LT-MED", [1, 3]),
    ]
    assert records[0].timestamp_ms == int((NOW - 120) * 1000)
    batch = FieldEventBatch.model_validate_json(records[0].value)
    assert [e.event_id for e in batch.events] == [e.event_id for e in kra]


def test_the_record_value_is_what_model_dump_would_give() -> None:
    events = _events(2, location={"lat": 55.1, "lon": 27.2}, attributes={"terrain": "forest"})

    [record] = section_records(events, record_max_events=10)

    assert orjson.loads(record.value) == {
        "schema_version": 1,
        "section_id": "LV-KRA",
        "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
    }


def test_records_are_bounded_in_events_and_in_bytes() -> None:
    events = _events(25, attributes={f"k{i}": "v" * 200 for i in range(20)})

    by_count = section_records(events, record_max_events=10)
    by_size = section_records(events, record_max_events=100, record_max_bytes=20_000)

    assert [len(r.positions) for r in by_count] == [10, 10, 5]
    assert all(len(r.value) <= 20_000 for r in by_size)
    assert [i for r in by_size for i in r.positions] == list(range(25))  # order kept
    assert [
        e.event_id for r in by_size for e in FieldEventBatch.model_validate_json(r.value).events
    ] == [e.event_id for e in events]


# --- publishing ------------------------------------------------------------------------


class FakeProducer:
    """What KafkaGate uses of AIOKafkaProducer: ``send`` returns a delivery future."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.futures: list[asyncio.Future[Any]] = []
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[Any]:
        self.sent.append(kwargs)
        if self.mode == "refuse":
            raise KafkaConnectionError("no broker")
        if self.mode == "stall":  # e.g. waiting for a full batch to drain
            await asyncio.Event().wait()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.mode == "ack":
            fut.set_result(None)
        self.futures.append(fut)
        return fut

    async def stop(self) -> None:
        pass


def _gate(producer: FakeProducer | None, settled: list[tuple[tuple[str, ...], bool]]) -> KafkaGate:
    gate = KafkaGate(lambda: producer, settle=lambda ids, ok: settled.append((tuple(ids), ok)))
    gate._producer = producer  # type: ignore[assignment]  # as keep_alive would after start
    return gate


def _records() -> list[Outgoing]:
    return [
        Outgoing("t", b"LV-KRA", b"{}", 0, ("a", "b")),
        Outgoing("t", b"LT-MED", b"{}", 0, ("c",)),
    ]


async def test_acknowledged_records_settle_their_ids_as_acked() -> None:
    settled: list[tuple[tuple[str, ...], bool]] = []
    gate = _gate(FakeProducer("ack"), settled)

    await gate.publish(_records(), asyncio.get_running_loop().time() + 1)

    assert settled == [(("a", "b"), True), (("c",), True)]


async def test_every_record_carries_the_request_receive_time_header() -> None:
    producer = FakeProducer("ack")
    gate = _gate(producer, [])
    stamped = Outgoing("t", b"LV-KRA", b"{}", 0, ("a",), received_at=1_700_000_000.1234)
    before = time.time()

    await gate.publish([stamped, *_records()], asyncio.get_running_loop().time() + 1)

    headers = [dict(kw["headers"]) for kw in producer.sent]
    assert headers[0] == {"bw-received-ms": b"1700000000123"}
    # Without a receive time, the time of the produce call.
    for h in headers[1:]:
        assert before * 1000 - 1 <= int(h["bw-received-ms"]) <= time.time() * 1000 + 1
    assert received_at(producer.sent[0]["headers"]) == 1_700_000_000.123


async def test_no_ack_by_the_deadline_is_broker_unavailable_and_a_late_ack_still_counts() -> None:
    settled: list[tuple[tuple[str, ...], bool]] = []
    producer = FakeProducer("hang")
    gate = _gate(producer, settled)
    loop = asyncio.get_running_loop()

    started = loop.time()
    with pytest.raises(BrokerUnavailable):
        await gate.publish(_records(), started + 0.2)

    assert loop.time() - started < 0.5
    assert settled == []  # still in flight: a retry must wait, not produce again
    producer.futures[0].set_result(None)
    producer.futures[1].set_exception(KafkaConnectionError("gone"))
    await asyncio.sleep(0.01)
    assert sorted(settled) == [(("a", "b"), True), (("c",), False)]


async def test_a_send_stalled_past_the_deadline_is_broker_unavailable() -> None:
    settled: list[tuple[tuple[str, ...], bool]] = []
    gate = _gate(FakeProducer("stall"), settled)
    loop = asyncio.get_running_loop()

    with pytest.raises(BrokerUnavailable, match="TimeoutError"):
        await gate.publish(_records(), loop.time() + 0.05)

    assert settled == [(("a", "b", "c"), False)]  # nothing was handed over
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the deadline's cancel was taken back


async def test_a_publish_cancelled_from_outside_is_cancelled_not_unavailable() -> None:
    settled: list[tuple[tuple[str, ...], bool]] = []
    producer = FakeProducer("hang")
    gate = _gate(producer, settled)
    publish = asyncio.ensure_future(
        gate.publish(_records(), asyncio.get_running_loop().time() + 10)
    )
    await asyncio.sleep(0)

    publish.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publish

    assert settled == []  # handed over: still in flight, watched for a late ack
    producer.futures[0].set_result(None)
    producer.futures[1].set_result(None)
    await asyncio.sleep(0.01)
    assert sorted(settled) == [(("a", "b"), True), (("c",), True)]
    await gate.stop()


async def test_a_refused_send_settles_everything_as_not_acked() -> None:
    settled: list[tuple[tuple[str, ...], bool]] = []
    gate = _gate(FakeProducer("refuse"), settled)

    with pytest.raises(BrokerUnavailable):
        await gate.publish(_records(), asyncio.get_running_loop().time() + 1)

    assert settled == [(("a", "b", "c"), False)]


async def test_without_a_producer_publish_is_broker_unavailable_at_once() -> None:
    settled: list[tuple[tuple[str, ...], bool]] = []
    gate = _gate(None, settled)

    with pytest.raises(BrokerUnavailable, match="not connected"):
        await gate.publish(_records(), asyncio.get_running_loop().time() + 10)

    assert settled == [(("a", "b", "c"), False)]
    assert not gate.ready


async def test_unacknowledged_ids_are_released_when_the_late_watch_gives_up() -> None:
    settled: list[tuple[tuple[str, ...], bool]] = []
    producer = FakeProducer("hang")
    gate = KafkaGate(
        lambda: producer,  # type: ignore[arg-type,return-value]
        settle=lambda ids, ok: settled.append((tuple(ids), ok)),
        late_ack_seconds=0.05,
    )
    gate._producer = producer  # type: ignore[assignment]

    with pytest.raises(BrokerUnavailable):
        await gate.publish(_records(), asyncio.get_running_loop().time() + 0.05)
    await asyncio.sleep(0.2)

    assert sorted(settled) == [(("a", "b"), False), (("c",), False)]
