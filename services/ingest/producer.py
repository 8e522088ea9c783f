"""Produce accepted field events to Kafka, grouped by section, and wait for the ack."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.models import FieldEvent
from services.common.errors import BorderwatchError

log = logging.getLogger(__name__)


class BrokerUnavailable(BorderwatchError):
    """The broker did not acknowledge in time; nothing may be reported as accepted."""


def batch_records(
    events: Sequence[FieldEvent], record_max_events: int
) -> list[tuple[str, bytes, int]]:
    """(section_id, record value, timestamp ms) per record: the events of one section,
    at most ``record_max_events`` per record, stamped with their newest observed_at."""
    by_section: dict[str, list[FieldEvent]] = defaultdict(list)
    for event in events:
        by_section[event.section_id].append(event)
    records = []
    for section_id, section_events in by_section.items():
        for start in range(0, len(section_events), record_max_events):
            chunk = section_events[start : start + record_max_events]
            newest = max(e.observed_at.timestamp() for e in chunk)
            value = orjson.dumps(
                {
                    "schema_version": 1,
                    "section_id": section_id,
                    "events": [e.model_dump(mode="json", exclude_none=True) for e in chunk],
                }
            )
            records.append((section_id, value, int(newest * 1000)))
    return records


class EventProducer:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        timeout: float,
        record_max_events: int,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout
        self._record_max_events = record_max_events

    async def publish(self, events: Sequence[FieldEvent]) -> float:
        """Send and wait until the broker acknowledged every record; returns seconds.

        Raises BrokerUnavailable if that does not happen within the timeout.
        """
        started = time.perf_counter()
        records = batch_records(events, self._record_max_events)

        async def send_all() -> None:
            futures = [
                await self._producer.send(
                    self._topic, value=value, key=section.encode(), timestamp_ms=ts
                )
                for section, value, ts in records
            ]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), timeout=self._timeout)
        except (TimeoutError, KafkaError) as exc:
            log.warning("produce to %s failed: %r", self._topic, exc)
            raise BrokerUnavailable(f"the broker did not acknowledge: {exc!r}") from exc
        return time.perf_counter() - started
