"""The API view's fetch age on a real broker: what shows a view cut off from Kafka.

Session 15 found a consumer that kept fetching from a dead leader forever (an
aiokafka task killed under uvloop, mended in ``services.common.aiokafka_mend``).
An API view in that state serves a frozen picture, and its record lag reads 0: the
end offsets it knows are those of its last fetch answer, which it has applied.
``bw_api_view_fetch_age_seconds`` is what grows then. Here a partition's fetches
stop because the consumer pauses it, the same observable state as fetches that
never come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from services.api.consumer import Source, ViewConsumer
from services.common.kafka import make_consumer, make_producer
from services.common.topics import Topics
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.integration


def _gauge(name: str, topic: str) -> float:
    value = REGISTRY.get_sample_value(name, {"topic": topic})
    assert value is not None, f"{name}{{topic={topic!r}}} is not exported"
    return value


async def _until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def _produce(producer: AIOKafkaProducer, topic: str, n: int) -> None:
    for i in range(n):
        await producer.send_and_wait(topic, b'{"n": %d}' % i, key=b"LV-KRA", partition=0)


def test_fetch_age_grows_while_fetches_stop_and_the_record_lag_cannot_see_it(
    deployment: Deployment,
) -> None:
    async def scenario() -> None:
        settings = deployment.settings()
        topic = Topics(settings.topic_prefix).section_state
        applied: list[dict[str, object]] = []

        def apply(value: dict[str, object]) -> bool:
            applied.append(value)
            return True

        consumer = make_consumer(settings)
        producer = make_producer(settings)
        await consumer.start()
        await producer.start()
        view = ViewConsumer(
            consumer,
            [Source(topic, "section_state", "beginning", apply)],
            lambda *_: None,
        )
        task = asyncio.create_task(view.run())
        try:
            await _produce(producer, topic, 3)
            await _until(lambda: len(applied) == 3, 20, "the view to apply 3 records")
            # Healthy: every fetch answer (empty ones too, every ~0.5 s) restamps it.
            await asyncio.sleep(2.5)
            assert _gauge("bw_api_view_fetch_age_seconds", topic) < 1.5
            assert _gauge("bw_api_view_lag_records", topic) == 0

            partitions = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            consumer.pause(*partitions)
            # A fetch in flight when pausing comes back within fetch_max_wait (0.5 s);
            # after it none is sent for these partitions.
            await asyncio.sleep(1.5)
            await _produce(producer, topic, 5)
            await _until(
                lambda: _gauge("bw_api_view_fetch_age_seconds", topic) > 3.0,
                10,
                "the fetch age to pass 3 s while no fetch is answered",
            )
            # Five records the view never saw, and the record lag still reads 0.
            assert len(applied) == 3
            assert _gauge("bw_api_view_lag_records", topic) == 0

            consumer.resume(*partitions)
            await _until(lambda: len(applied) == 8, 20, "the view to apply the 5 new ones")
            await _until(
                lambda: _gauge("bw_api_view_fetch_age_seconds", topic) < 1.5,
                10,
                "the fetch age to fall back once fetches are answered again",
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await producer.stop()
            await consumer.stop()

    asyncio.run(scenario())
