"""Reads the live picture from Kafka into the view and fans changes out to the feeds.

Each API replica reads every partition itself, without a consumer group, so
any number of replicas serve the same picture:

- ``bw.section-state`` (compacted), ``bw.alerts`` and ``bw.alert-acks`` from the
  beginning (of retention): the view is ready once it has caught up with the
  end offsets seen at start;
- ``bw.field-events`` and ``bw.report-events`` from near their end, for the
  "recent" lists only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

log = logging.getLogger(__name__)

VIEW_LAG_RECORDS = Gauge(
    "bw_api_view_lag_records",
    "Records not applied yet: end offsets at the last fetch minus the view's positions",
    ["topic"],
)
VIEW_LAG_SECONDS = Gauge(
    "bw_api_view_lag_seconds",
    "How far the view is behind Kafka: 0 when it has applied every record of the state, "
    "alert and ack topics that Kafka had at the last fetch, else the age of the newest "
    "record it has applied",
)
VIEW_FETCH_AGE = Gauge(
    "bw_api_view_fetch_age_seconds",
    "Seconds since Kafka last answered a fetch for the topic's least recently fetched "
    "partition (since assignment when none answered yet). A healthy view refreshes it "
    "about every half second, with or without new records; one that keeps growing is "
    "a view cut off from a partition's leader, which the end offsets of the last fetch "
    "alone (bw_api_view_lag_records) cannot show",
    ["topic"],
)
# How often the lag is measured, seconds.
LAG_PERIOD = 1.0

# (type, value, partition, offset) for every record that changed the view.
Listener = Callable[[str, dict[str, Any], int, int], None]


@dataclass(frozen=True)
class Source:
    topic: str
    type: str
    # "beginning": whole retention, counted for readiness; otherwise how many of
    # the newest records per partition to read first (a "recent" list).
    start: str | int
    apply: Callable[[dict[str, Any]], bool]


class ViewConsumer:
    def __init__(
        self, consumer: AIOKafkaConsumer, sources: list[Source], on_change: Listener
    ) -> None:
        self._consumer = consumer
        self._sources = {s.topic: s for s in sources}
        self._on_change = on_change
        self._targets: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._partitions: list[TopicPartition] = []
        # Newest record timestamp (ms) applied from the view's own topics.
        self._newest_ms = 0
        self._lag_at = 0.0
        # When the partitions were assigned (Unix ms): the fetch age of a partition
        # Kafka never answered a fetch for yet.
        self._assigned_ms = 0.0
        self.ready = asyncio.Event()

    async def _assign(self) -> None:
        """Assign every partition of our topics, waiting for topics that do not exist yet."""
        while True:
            partitions: list[TopicPartition] = []
            missing = []
            for topic in self._sources:
                parts = self._consumer.partitions_for_topic(topic)
                if not parts:
                    await self._consumer._client.force_metadata_update()
                    parts = self._consumer.partitions_for_topic(topic)
                if not parts:
                    missing.append(topic)
                else:
                    partitions += [TopicPartition(topic, p) for p in sorted(parts)]
            if not missing:
                break
            log.info("waiting for topics %s to exist", missing)
            await asyncio.sleep(1.0)
        self._consumer.assign(partitions)
        self._partitions = partitions
        self._assigned_ms = time.time() * 1000
        ends = await self._consumer.end_offsets(partitions)
        starts = await self._consumer.beginning_offsets(partitions)
        for tp in partitions:
            source = self._sources[tp.topic]
            if source.start == "beginning":
                self._consumer.seek(tp, starts[tp])
                if ends[tp] > starts[tp]:
                    self._targets[tp] = ends[tp]
            else:
                self._consumer.seek(tp, max(starts[tp], ends[tp] - int(source.start)))
        log.info(
            "view catching up to %s",
            {f"{t.topic}:{t.partition}": o for t, o in self._targets.items()},
        )

    def _check_ready(self) -> None:
        if self.ready.is_set():
            return
        for tp, target in list(self._targets.items()):
            if self._positions.get(tp, 0) >= target:
                del self._targets[tp]
        if not self._targets:
            self.ready.set()
            log.info("view ready")

    async def run(self) -> None:
        await self._assign()
        self._check_ready()
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError as exc:
                log.warning("view consumer error: %r; retrying", exc)
                await asyncio.sleep(1.0)
                continue
            fanned = 0
            for tp, records in batches.items():
                source = self._sources[tp.topic]
                for record in records:
                    self._positions[tp] = record.offset + 1
                    if record.value is None:
                        continue
                    try:
                        value = orjson.loads(record.value)
                        changed = source.apply(value)
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                        log.error(
                            "bad record skipped: %r; topic=%s partition=%s offset=%s",
                            exc,
                            tp.topic,
                            tp.partition,
                            record.offset,
                        )
                        continue
                    if source.start == "beginning" and record.timestamp > self._newest_ms:
                        self._newest_ms = record.timestamp
                    if changed:
                        self._on_change(source.type, value, tp.partition, record.offset)
                        fanned += 1
                        if fanned % 64 == 0:
                            # Let feed writers drain their queues between bursts, so a
                            # catch-up of thousands of records does not look like a
                            # slow client to a healthy one.
                            await asyncio.sleep(0)
            if not self.ready.is_set():
                for tp in self._targets:
                    pos = await self._consumer.position(tp)
                    self._positions[tp] = max(self._positions.get(tp, 0), pos)
                self._check_ready()
            if time.monotonic() - self._lag_at >= LAG_PERIOD:
                await self._measure_lag()

    async def _measure_lag(self) -> None:
        """Records behind the end offsets of the last fetch, per topic, how old the
        newest applied record is while the view's topics are behind, and how long
        ago Kafka last answered a fetch for each topic's partitions."""
        self._lag_at = time.monotonic()
        behind: dict[str, int] = dict.fromkeys(self._sources, 0)
        # aiokafka stamps a partition (Unix ms) on every fetch answer for it, empty ones
        # included: a fetch that never comes back leaves the stamp, and the end offset
        # above, where they were.
        now_ms = time.time() * 1000
        age_ms: dict[str, float] = dict.fromkeys(self._sources, 0.0)
        for tp in self._partitions:
            polled = self._consumer.last_poll_timestamp(tp)
            age = now_ms - (self._assigned_ms if polled is None else polled)
            if age > age_ms[tp.topic]:
                age_ms[tp.topic] = age
            end = self._consumer.highwater(tp)
            if end is None:
                continue
            behind[tp.topic] += max(0, end - await self._consumer.position(tp))
        for topic, n in behind.items():
            VIEW_LAG_RECORDS.labels(topic).set(n)
        for topic, ms in age_ms.items():
            VIEW_FETCH_AGE.labels(topic).set(max(0.0, ms / 1000))
        view_behind = any(behind[t] for t, s in self._sources.items() if s.start == "beginning")
        VIEW_LAG_SECONDS.set(
            max(0.0, time.time() - self._newest_ms / 1000)
            if view_behind and self._newest_ms
            else 0.0
        )
