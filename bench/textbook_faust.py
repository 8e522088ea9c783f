"""The textbook Faust pattern, for comparison only: one tumbling 1 h windowed-table
update per event, iterating the stream record by record. Run by
``bench/aggregator.py``."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import faust
import orjson
from prometheus_client import Counter, generate_latest

app = faust.App(
    "bench-textbook",
    broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
    store="memory://",
    web_bind="127.0.0.1",
    web_port=int(os.environ["BENCH_WEB_PORT"]),
    broker_session_timeout=6.0,
    consumer_auto_offset_reset="earliest",
    producer_linger=0.01,
    stream_buffer_maxsize=16_384,
    table_standby_replicas=0,
    topic_partitions=6,
    datadir=os.environ.get("BW_DATA_DIR", "/tmp") + "/textbook",
)
topic = app.topic(
    os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes, value_serializer="raw"
)
counts = app.Table("counts", default=int, partitions=6).tumbling(
    timedelta(hours=1), expires=timedelta(days=1)
)
EVENTS = Counter("bench_textbook_events", "events counted", ["kind"])


@app.agent(topic)
async def count(stream: Any) -> None:
    async for value in stream:
        record = orjson.loads(value)
        # One event per record, or a batch of one section's events (as ingest writes).
        for event in record["events"] if "events" in record else [record]:
            counts[f"{event['section_id']}|{event['kind']}"] += event["count"]
            EVENTS.labels(event["kind"]).inc()


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")


@app.page("/readyz")
async def readyz(web: Any, request: Any) -> Any:
    return web.json({"ready": not app.rebalancing}, status=200 if not app.rebalancing else 503)


if __name__ == "__main__":
    from faust.worker import Worker

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
