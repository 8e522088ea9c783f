"""The Faust app of the aggregator, built from our settings.

Faust's CLI and workers need a module-level ``app``; settings are read here,
at this entry point, and plain values are passed below. Agents live in
``agents.py``; the arithmetic in ``windows.py``, ``rules.py`` and ``state.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import faust
import faust.transport.drivers.aiokafka as faust_aiokafka
import mode.loop

from services.aggregator import bulk, durable
from services.aggregator.credentials import broker_credentials
from services.aggregator.settings import PRODUCER_BATCH_BYTES, AggregatorSettings
from services.common.settings import load_settings
from services.common.topics import Topics

# Faust reads these to override App(...) arguments; our settings decide instead.
for _name in ("BROKER_URL", "STORE_URL", "CACHE_URL", "WEB_URL", "APP_DEBUG", "DATADIR"):
    os.environ.pop(_name, None)

settings = load_settings(AggregatorSettings)
topics = Topics(settings.topic_prefix)


settings.data_dir.mkdir(parents=True, exist_ok=True)

# uvloop, as ``faust -L uvloop`` would: the event-loop policy must be set before
# the worker and its consumer thread create their loops. It cut the worker's CPU
# per event and its input-to-state latency (python -m bench.feeds).
mode.loop.use("uvloop")

# Before the app creates its producer: a flush that waits for every queued
# changelog record, so offsets are never committed (nor states published)
# ahead of the table (see durable.py).
durable.install()

# Before the app creates its consumer: records of the input topic reach the
# counting task in bulk, once per fetch, not one Faust event at a time (bulk.py).
input_sink = bulk.BulkSink()
bulk.install(
    topics.field_events,
    input_sink,
    fetch_min_bytes=settings.fetch_min_bytes,
    fetch_max_wait_ms=settings.fetch_max_wait_ms,
)


def _idempotent_settings(self: Any) -> Mapping[str, Any]:
    # Faust makes its producer idempotent only inside transactions (exactly_once,
    # which has open duplicate defects). Without it, a retry after a leader change
    # can write a changelog or state record twice; with it, the broker drops the
    # copy. acks stays "all" (producer_acks=-1 below).
    return {**_stock_settings_extra(self), "acks": "all", "enable_idempotence": True}


_stock_settings_extra = faust_aiokafka.Producer._settings_extra
faust_aiokafka.Producer._settings_extra = _idempotent_settings  # type: ignore[method-assign]

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
    broker_credentials=broker_credentials(settings),
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    datadir=str(settings.data_dir),
    topic_partitions=settings.field_partitions,
    # None: set by cluster size when the worker starts (agents.run_worker).
    topic_replication_factor=settings.topic_replication_factor or 1,
    # The first group join waits session_timeout / 2: 6 s -> 3 s instead of 30 s.
    broker_session_timeout=settings.session_timeout,
    broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
    broker_commit_every=10_000,
    broker_commit_interval=settings.commit_interval,
    consumer_auto_offset_reset="earliest",
    producer_linger=settings.producer_linger_ms / 1000,
    # Faust's 16 KiB holds three section cores (~4.5 KB each): a batch touching more
    # sections of one partition waited in aiokafka's add_message for each full batch
    # to be drained, one produce round trip apiece, before it could send the rest.
    producer_max_batch_size=PRODUCER_BATCH_BYTES,
    producer_acks=-1,
    stream_buffer_maxsize=16_384,
    table_standby_replicas=0,
    web_enabled=True,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    web_host=settings.web_host,
)
