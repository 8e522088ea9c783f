"""Faust glue of report analysis: each report event in, one analysis out.

Reads ``bw.report-events`` (a :class:`schemas.models.ReportEvent`, keyed by
country), calls the plain-Python analyser in :mod:`services.reports` and
publishes a :class:`schemas.models.ReportAnalysis` on ``bw.report-analysis``
(key = country). Registered on the aggregator's ``app``; imported by
``python -m services.aggregator`` beside ``agents``.

The analysis runs in a thread: a 100 kB report takes a few hundred ms of CPU,
and the field-event agents on the same event loop must not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import orjson
from prometheus_client import Counter, Histogram

from schemas.models import ReportSignalName, ReportSourceType
from services.aggregator.app import app, settings, topics
from services.aggregator.metrics import ReportCounters, ReportLabels
from services.common.catalogue import Catalogue
from services.common.topics import REPORT_ANALYSIS, REPORT_EVENTS, topic_specs
from services.reports.analysis import analysis_message
from services.reports.extract import AREAS
from services.reports.packs import LANGUAGES, METRICS

log = logging.getLogger(__name__)

REPORTS_BAD = Counter(
    "bw_aggregator_bad_reports_total", "Report event records that could not be analysed"
)
COUNTERS = ReportCounters(
    ReportLabels(
        countries=tuple(Catalogue.load(settings.sections_file).countries()),
        areas=AREAS,
        languages=LANGUAGES,
        source_types=tuple(t.value for t in ReportSourceType),
        metrics=METRICS,
        signals=tuple(s.value for s in ReportSignalName),
    )
)
ANALYSIS_SECONDS = Histogram(
    "bw_aggregator_report_analysis_seconds",
    "Time to analyse one report",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)

_PARTITIONS = {spec.suffix: spec.partitions for spec in topic_specs()}
_raw: Any = faust.Schema(
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
report_events = app.topic(topics.report_events, schema=_raw, partitions=_PARTITIONS[REPORT_EVENTS])
report_analysis_topic = app.topic(
    topics.report_analysis, schema=_raw, partitions=_PARTITIONS[REPORT_ANALYSIS]
)


def _timed(report: dict[str, Any]) -> dict[str, Any]:
    with ANALYSIS_SECONDS.time():
        return analysis_message(report)


@app.agent(report_events, name="analyse-report-events")
async def analyse_report_events(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        try:
            report = orjson.loads(event.value)
            out = await asyncio.to_thread(_timed, report)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            REPORTS_BAD.inc()
            log.warning(
                "report record not analysed (topic %s, partition %s, offset %s): %s",
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            continue
        except Exception:
            # A defect in the analyser must not stop the agent (Faust does not restart
            # a crashed agent): count it, log it with its place, go on.
            REPORTS_BAD.inc()
            log.exception(
                "analyser failed (topic %s, partition %s, offset %s)",
                message.topic,
                message.partition,
                message.offset,
            )
            continue
        await report_analysis_topic.send(key=out["country"].encode(), value=orjson.dumps(out))
        COUNTERS.analysis(out)
