"""Reads the live picture from Kafka into the view and fans changes out to the feeds.

Each API replica reads every partition of ``bw.section-state`` (compacted) and
``bw.alerts`` from the beginning itself, without a consumer group, so any
number of replicas serve the same picture. The view is ready once it has
caught up with the end offsets seen at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.api.view import View

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any], str], None]


class ViewConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        view: View,
        state_topic: str,
        alerts_topic: str,
        on_change: Listener,
    ) -> None:
        self._consumer = consumer
        self._view = view
        self._topics = {state_topic: "section_state", alerts_topic: "alert"}
        self._on_change = on_change
        self._targets: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self.ready = asyncio.Event()

    async def _assign(self) -> None:
        """Assign every partition of our topics, waiting for topics that do not exist yet."""
        while True:
            partitions: list[TopicPartition] = []
            missing = []
            for topic in self._topics:
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
        await self._consumer.seek_to_beginning(*partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._targets = {tp: off for tp, off in ends.items() if off > 0}
        log.info(
            "view catching up to %s",
            {f"{t.topic}:{t.partition}": o for t, o in self._targets.items()},
        )

    def _check_ready(self) -> None:
        if self.ready.is_set():
            return
        for tp, target in list(self._targets.items()):
            if self._position(tp) >= target:
                del self._targets[tp]
        if not self._targets:
            self.ready.set()
            log.info(
                "view ready: %d sections, %d alerts", len(self._view.states), len(self._view.alerts)
            )

    def _position(self, tp: TopicPartition) -> int:
        return self._positions.get(tp, 0)

    async def run(self) -> None:
        await self._assign()
        self._check_ready()
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            except KafkaError as exc:
                log.warning("view consumer error: %r; retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                kind = self._topics[tp.topic]
                for record in records:
                    self._positions[tp] = record.offset + 1
                    if record.value is None:
                        continue
                    try:
                        value = orjson.loads(record.value)
                        changed = (
                            self._view.apply_state(value)
                            if kind == "section_state"
                            else self._view.apply_alert(value)
                        )
                    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                        log.error(
                            "bad record skipped: %s; topic=%s partition=%s offset=%s",
                            exc,
                            tp.topic,
                            tp.partition,
                            record.offset,
                        )
                        continue
                    if changed:
                        self._on_change(kind, value, f"{tp.topic}:{tp.partition}:{record.offset}")
            if not self.ready.is_set():
                for tp in self._targets:
                    pos = await self._consumer.position(tp)
                    self._positions[tp] = max(self._positions.get(tp, 0), pos)
                self._check_ready()
