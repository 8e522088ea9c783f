"""Benchmark: what one live single-event update costs the aggregator in each part, alone.

    python -m bench.aggregator_floors [--rate 200] [--sections 200] [--seconds 20]
                                      [--runs 2]

Issue 10's point 3(c) asks for <= 15 % of a core at 200 single-event updates/s
(0.75 ms of CPU per update); ``python -m bench.feeds`` measures the worker as a
whole. This splits that figure. On a real embedded broker, with a poster process
sending single-event records as ingest does (one per section in turn, at
``--rate``, linger 0, the ``bw-received-ms`` header), it prints the CPU this
process spends per input record on:

- ``engine``: the counting alone, in-process, no I/O: the aggregator's ``Engine``
  (the shipped rules) on one event, ``refresh``, the outbox and the table writes
  (``SectionAggregate.writes``), and the state record's encoding;
- ``consume``: a bare aiokafka consumer of the input with the worker's fetch
  gathering (``BW_FETCH_MIN_BYTES``, ``BW_FETCH_MAX_WAIT_MS``), decoding each
  record's JSON;
- ``io``: the worker's Kafka traffic without Faust and without the engine: the
  same consumer, and per fetch, for each record, two changelog records (a dedupe
  segment and a section core of the sizes the engine writes) on the section's
  partition, all acknowledged (acks=all, idempotent, the linger and batch size of
  the worker's producer), then one state record per record with its version header; beside it
  a reader of the state topic with the assessor's fetch settings.

``engine`` + ``io`` is a floor for the worker's CPU per update, not a forecast: in
the worker the parts share one loop and one cache, and Faust adds its consumer
thread, its acks and commits. ``--runs`` repeats the live floors, alternated.

Prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.feeds import write_catalogue
from services.aggregator.rules import load_rules
from services.aggregator.settings import PRODUCER_BATCH_BYTES, AggregatorSettings
from services.aggregator.state import BatchOutcome, Engine, SectionAggregate
from services.common.catalogue import Catalogue
from services.common.headers import received_header, version_header
from services.common.kafka import client_options, make_consumer, make_producer, partition_for
from services.common.settings import DEFAULT_CONFIG_DIR, CommonSettings
from services.runtime.broker import EmbeddedKafka

PARTITIONS = 6
WARMUP = 3.0


def event(section: str, observed: datetime) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "kind": "detection",
        "section_id": section,
        "observed_at": observed.isoformat(),
        "count": 1,
        "source": {"type": "thermal_camera", "id": "BENCH-TC-1"},
        "confidence": "high",
    }


def engine_for(catalogue_file: Path) -> Engine:
    return Engine(Catalogue.load(catalogue_file), load_rules(DEFAULT_CONFIG_DIR / "rules.yaml"))


def update(
    engine: Engine, agg: SectionAggregate, offset: int, ev: dict[str, Any], now: float
) -> tuple[list[tuple[bytes, bytes | None]], bytes | None]:
    """One single-event update as the worker makes it: counted, refreshed, its outbox
    set, its table writes built and its state record encoded."""
    engine.apply_record(agg, 0, offset, [ev], BatchOutcome())
    pub = engine.refresh(agg, now)
    if pub:
        agg.outbox = pub.to_outbox()
    writes = agg.writes()
    state = orjson.dumps(pub.state_doc) if pub.state_doc is not None else None
    return writes, state


def engine_floor(catalogue_file: Path, sections: list[str], updates: int) -> float:
    """CPU seconds per update of the engine alone, after 24 h of events per section."""
    engine = engine_for(catalogue_file)
    aggs = [SectionAggregate(section_id=s) for s in sections]
    start = datetime.now(UTC) - timedelta(hours=24)
    for i in range(24 * 4):  # a day held, every quarter hour
        observed = start + timedelta(minutes=15 * i)
        for k, agg in enumerate(aggs):
            update(engine, agg, i * len(aggs) + k, event(agg.section_id, observed), time.time())
    offset = 10**6
    evs = [event(sections[i % len(sections)], datetime.now(UTC)) for i in range(updates)]
    t0 = time.process_time()
    for i, ev in enumerate(evs):
        update(engine, aggs[i % len(aggs)], offset + i, ev, time.time())
    return (time.process_time() - t0) / updates


def payload_sizes(catalogue_file: Path, sections: list[str]) -> tuple[int, int, int]:
    """Bytes of a dedupe segment, a section core and a state record, as the engine
    writes them for one live update of a section holding a day of events."""
    engine = engine_for(catalogue_file)
    agg = SectionAggregate(section_id=sections[0])
    start = datetime.now(UTC) - timedelta(hours=24)
    writes: list[tuple[bytes, bytes | None]] = []
    state: bytes | None = None
    for i in range(24 * 4 + 1):
        observed = min(start + timedelta(minutes=15 * i), datetime.now(UTC))
        writes, state = update(engine, agg, i, event(agg.section_id, observed), time.time())
    values = [len(v) for _, v in writes if v is not None]
    return min(values), max(values), len(state or b"")


async def _post(bootstrap: str, topic: str, sections: list[str], rate: float, seconds: float):
    """The poster (its own process): single-event records, sections in turn, paced."""
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    try:
        period = 1.0 / rate
        t = time.monotonic()
        end = t + seconds
        i = 0
        while t < end:
            delay = t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sid = sections[i % len(sections)]
            value = orjson.dumps({"events": [event(sid, datetime.now(UTC))]})
            await producer.send(
                topic, value, key=sid.encode(), headers=[received_header(time.time())]
            )
            i += 1
            t += period
        await producer.flush()
    finally:
        await producer.stop()


async def _create(settings: CommonSettings, names: list[str]) -> None:
    """Create the topics and wait until every partition has a leader."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
        for _ in range(100):
            described = await admin.describe_topics(names)
            if all(
                len(t["partitions"]) == PARTITIONS
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topics {names} have no leaders after 10 s")
    finally:
        await admin.close()


async def live_floor(
    settings: CommonSettings,
    prefix: str,
    sections: list[str],
    rate: float,
    seconds: float,
    sizes: tuple[int, int, int] | None,
) -> tuple[float, int]:
    """(CPU seconds per input record, records) of a bare consumer (``sizes`` None) or
    of the worker's whole Kafka traffic (``sizes``: segment, core, state bytes)."""
    worker = AggregatorSettings()
    run = uuid.uuid4().hex[:6]
    source, changelog, states = (f"{prefix}{run}-{n}" for n in ("in", "changelog", "state"))
    await _create(settings, [source, changelog, states])
    consumer = make_consumer(
        settings,
        source,
        fetch_min_bytes=worker.fetch_min_bytes,
        fetch_max_wait_ms=worker.fetch_max_wait_ms,
    )
    await consumer.start()
    if sizes is not None:
        producer = make_producer(
            settings, linger_ms=worker.producer_linger_ms, max_batch_size=PRODUCER_BATCH_BYTES
        )
        reader = make_consumer(settings, states, fetch_min_bytes=1 << 20, fetch_max_wait_ms=250)
        await producer.start()
        await reader.start()
    poster = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bench.aggregator_floors", "--post", settings.kafka_bootstrap],
        *[source, str(rate), str(WARMUP + seconds + 1), ",".join(sections)],
    )
    segment = b"s" * (sizes[0] if sizes else 0)
    core = b"c" * (sizes[1] if sizes else 0)
    state = b"x" * (sizes[2] if sizes else 0)
    stop = asyncio.Event()

    async def read_states() -> None:
        while not stop.is_set():
            await reader.getmany(timeout_ms=200)

    readers = [asyncio.create_task(read_states())] if sizes is not None else []
    counted, t0, started = 0, 0.0, 0.0
    version = 0
    try:
        first = time.monotonic()
        while True:
            now = time.monotonic()
            if not started and now - first >= WARMUP:
                started, t0, counted = now, time.process_time(), 0
            if started and now - started >= seconds:
                break
            fetched = await consumer.getmany(timeout_ms=200)
            batch = [r for records in fetched.values() for r in records]
            for record in batch:
                orjson.loads(record.value)
            counted += len(batch)
            if sizes is None or not batch:
                continue
            acks = []
            for record in batch:
                p = partition_for(record.key, PARTITIONS)
                acks.append(
                    await producer.send(changelog, segment, key=record.key + b"|0|0", partition=p)
                )
                acks.append(await producer.send(changelog, core, key=record.key, partition=p))
            await asyncio.gather(*acks)
            for record in batch:
                version += 1
                await producer.send(
                    states, state, key=record.key, headers=[version_header(version)]
                )
        cpu = time.process_time() - t0
    finally:
        stop.set()
        for task in readers:
            await task
        await asyncio.wait_for(poster.wait(), 60)
        await consumer.stop()
        if sizes is not None:
            await producer.stop()
            await reader.stop()
    return cpu / max(1, counted), counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="records/s posted")
    parser.add_argument("--sections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per floor")
    parser.add_argument("--runs", type=int, default=2, help="live floors, alternated")
    parser.add_argument("--post", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.post:
        bootstrap, topic, rate, seconds, sections = args.post
        asyncio.run(_post(bootstrap, topic, sections.split(","), float(rate), float(seconds)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bw-bench-aggfloors-"))
    sections = write_catalogue(workdir / "sections.yaml", args.sections)
    catalogue = workdir / "sections.yaml"
    sizes = payload_sizes(catalogue, sections)
    print(
        f"aggregator floors: {args.rate:.0f} single-event records/s over {args.sections} "
        f"sections, {PARTITIONS} partitions; CPU of this process per input record"
    )
    print(
        f"  record sizes as the engine writes them: segment {sizes[0]} B, core {sizes[1]} B, "
        f"state {sizes[2]} B"
    )
    engine = [engine_floor(catalogue, sections, 20_000) for _ in range(2)]
    print("  engine (no I/O):   " + " / ".join(f"{1000 * e:.3f}" for e in engine) + " ms")
    broker = EmbeddedKafka(workdir / "kafka", heap="768m")
    broker.start()
    try:
        broker.wait_ready(timeout=90)
        settings = CommonSettings(kafka_bootstrap=broker.bootstrap)
        prefix = f"floors{uuid.uuid4().hex[:6]}."
        results: dict[str, list[tuple[float, int]]] = {"consume": [], "io": []}
        for _ in range(args.runs):
            for name, with_sizes in (("consume", None), ("io", sizes)):
                results[name].append(
                    asyncio.run(
                        live_floor(settings, prefix, sections, args.rate, args.seconds, with_sizes)
                    )
                )
        for name, label in (("consume", "consume + decode"), ("io", "consume + produce")):
            figures = " / ".join(f"{1000 * c:.3f} ({n:,} records)" for c, n in results[name])
            print(f"  {label + ':':18} {figures} ms")
        best_io = min(c for c, _ in results["io"])
        print(
            f"  floor, engine + io: {1000 * (min(engine) + best_io):.3f} ms per update "
            f"(3(c)'s budget: 0.750 ms)"
        )
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
