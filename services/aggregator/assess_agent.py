"""Faust glue of the assessor: discrepancy alerts and closure-criteria assessments.

Each worker reads ``bw.section-state``, ``bw.report-analysis``, ``bw.alerts``
and ``bw.assessment`` whole, without a group (as the API does), into a
:class:`services.reports.picture.Picture`. A wall-clock timer then publishes,
for the countries this worker owns, the ``report_discrepancy`` alert
transitions (on ``bw.alerts``) and every assessment that changed (on the
compacted ``bw.assessment``, key = country). A worker owns a country when the
group assigned it the country's partition of ``bw.report-events``, so exactly
one worker speaks for each country, and a rebalance hands it over; the new
owner takes up open episodes from ``bw.alerts`` and last assessments from
``bw.assessment`` before it publishes anything.

Registered on the aggregator's ``app``; imported by ``python -m services.aggregator``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP
from prometheus_client import REGISTRY

from services.aggregator.app import app, settings, topics
from services.aggregator.metrics import AssessmentCollector
from services.aggregator.reports_agent import COUNTERS
from services.aggregator.rules import load_discrepancy_rules
from services.common.catalogue import Catalogue
from services.common.headers import version_of
from services.common.kafka import make_consumer, partition_for
from services.common.topics import REPORT_EVENTS, topic_specs
from services.reports.assessment import FACTORS, LEVELS, STAGES, AssessmentConfig
from services.reports.picture import Picture

log = logging.getLogger(__name__)

_raw: Any = faust.Schema(
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
_alerts_out = app.topic(topics.alerts, schema=_raw)
_assessment_out = app.topic(topics.assessment, schema=_raw)
_REPORT_PARTITIONS = {s.suffix: s.partitions for s in topic_specs()}[REPORT_EVENTS]
COUNTRIES = Catalogue.load(settings.sections_file).countries()
picture = Picture(
    load_discrepancy_rules(settings.rules_file),
    AssessmentConfig(window_hours=settings.assessment_window_hours),
)


class _Reader:
    """Whole-topic reader feeding the picture; ``ready`` once it reached the ends seen
    at start, so nothing is published from a half-read history."""

    def __init__(self) -> None:
        self.ready = False
        self.apply = {
            topics.section_state: picture.apply_state,
            topics.section_hours: picture.apply_hour,
            topics.report_analysis: picture.apply_analysis,
            topics.alerts: picture.apply_alert,
            topics.assessment: picture.apply_assessment,
        }

    async def run(self) -> None:
        # It publishes on a wall-clock timer, so its fetches may gather: with the
        # default (return on the first byte) every section state published by any
        # worker cost one fetch of every partition in each worker's main loop.
        consumer = make_consumer(settings, fetch_min_bytes=1 << 20, fetch_max_wait_ms=250)
        log.info("assessor starting its reader")
        await consumer.start()
        try:
            partitions = await self._assign(consumer)
            ends = await consumer.end_offsets(partitions)
            await consumer.seek_to_beginning(*partitions)
            targets = {tp: end for tp, end in ends.items() if end > 0}
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    apply = self.apply[tp.topic]
                    states = tp.topic == topics.section_state
                    for r in records:
                        if states and _offered(tp, r):
                            continue
                        try:
                            apply(orjson.loads(r.value))
                        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                            log.warning(
                                "assessor skipped a record (topic %s, partition %s, offset %s): %s",
                                tp.topic,
                                tp.partition,
                                r.offset,
                                exc,
                            )
                if not self.ready:
                    targets = {
                        tp: end for tp, end in targets.items() if await consumer.position(tp) < end
                    }
                    if not targets:
                        self.ready = True
                        log.info("assessor caught up")
        finally:
            await consumer.stop()

    async def _assign(self, consumer: Any) -> list[TopicPartition]:
        while True:
            out: list[TopicPartition] = []
            missing = []
            for topic in self.apply:
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await consumer._client.force_metadata_update()
                    parts = consumer.partitions_for_topic(topic)
                if parts:
                    out += [TopicPartition(topic, p) for p in sorted(parts)]
                else:
                    missing.append(topic)
            if not missing:
                consumer.assign(out)
                log.info("assessor reading %d partitions of %s", len(out), ", ".join(self.apply))
                return out
            log.info("assessor waiting for topics %s", missing)
            await asyncio.sleep(1.0)


def _offered(tp: TopicPartition, record: Any) -> bool:
    """Offer a section state to the picture undecoded if its header gives its version
    (the picture decodes only the newest of each section, when it is read); False
    for a state to decode now (no header: from before it, or another producer)."""
    version = version_of(record.headers)
    if version is None or record.key is None or record.value is None:
        return False
    origin = f"topic {tp.topic}, partition {tp.partition}, offset {record.offset}"
    picture.offer_state(record.key.decode(errors="replace"), version, record.value, origin)
    return True


reader = _Reader()


@app.task  # type: ignore[untyped-decorator]
async def read_picture() -> None:
    while True:
        try:
            await reader.run()
        except KafkaError as exc:
            log.warning("assessor reader restarting after %r", exc)
            reader.ready = False
            await asyncio.sleep(1.0)


def owned_countries() -> list[str]:
    """The countries whose partition of ``bw.report-events`` this worker holds."""
    assigned = app.consumer.assignment()
    return [
        c
        for c in COUNTRIES
        if TP(topics.report_events, partition_for(c.encode(), _REPORT_PARTITIONS)) in assigned
    ]


@app.timer(interval=settings.tick_seconds)  # type: ignore[untyped-decorator]
async def assess_tick() -> None:
    if not reader.ready or app.rebalancing:
        return
    owned = owned_countries()
    if not owned:
        return
    now = datetime.now(UTC)
    for transition in picture.discrepancies(now, owned):
        await _alerts_out.send(key=transition["alert_id"].encode(), value=orjson.dumps(transition))
        COUNTERS.transition(transition)
        log.info("discrepancy alert %s %s", transition["alert_id"], transition["status"])
    for assessment in picture.assessments(now, owned):
        await _assessment_out.send(
            key=assessment["country"].encode(), value=orjson.dumps(assessment)
        )


# Built at scrape time from the picture for the countries owned now (no stale series
# once a country's partition moved to another worker).
REGISTRY.register(
    AssessmentCollector(
        lambda: [] if app.rebalancing else owned_countries(),
        lambda: picture.published,
        lambda: picture.analyses.values(),
        FACTORS,
        LEVELS,
        STAGES,
    )
)
