"""Benchmark: events/s through one aggregator worker, beside a ceiling and textbook Faust.

    python -m bench.aggregator [--events 200000] [--textbook-events 50000]

Starts a real embedded Kafka broker in a temporary directory, writes N field
events over 20 sections x 6 kinds the way ingest does (one record per
section per request of 1,000 events), then measures, in one run:

- borderwatch: one ``python -m services.aggregator`` worker, from ready to the
  last event counted (read from its /metrics), and checks the published 24 h
  counts per section equal the posted ones exactly;
- ceiling: a plain aiokafka loop that only fetches and decodes the same records;
- textbook Faust: one event per record and one tumbling windowed-table update
  per event (the pattern in Faust's docs), on a smaller sample.

Prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.models import KINDS
from services.common.kafka import ensure_topics
from services.common.settings import DEFAULT_CONFIG_DIR, CommonSettings
from services.runtime.broker import EmbeddedKafka, free_port

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 6


def twenty_sections(dest: Path) -> list[str]:
    """The shipped catalogue plus synthetic sections up to 20."""
    data = yaml.safe_load((DEFAULT_CONFIG_DIR / "sections.yaml").read_text(encoding="utf-8"))
    sections = data["sections"]
    n = 0
    while len(sections) < 20:
        n += 1
        base = dict(sections[n - 1])
        base["id"] = f"PL-X{n:02d}"
        base["name"] = f"Synthetic {n}"
        base["country"] = "PL"
        sections.append(base)
    dest.write_text(yaml.safe_dump({"sections": sections[:20]}, allow_unicode=True), "utf-8")
    return [s["id"] for s in sections[:20]]


def make_events(n: int, sections: list[str], seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [
        {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "kind": rng.choice(KINDS),
            "section_id": rng.choice(sections),
            "observed_at": (now - timedelta(seconds=rng.uniform(0, 3600))).isoformat(),
            "count": rng.randint(1, 3),
            "source": {"type": "thermal_camera", "id": "TC-1"},
            "confidence": "high",
        }
        for _ in range(n)
    ]


async def produce_batched(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> int:
    """As ingest does: per request of 1,000 events, one record per section."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    records = 0
    try:
        futures = []
        for start in range(0, len(events), 1000):
            by_section: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for e in events[start : start + 1000]:
                by_section[e["section_id"]].append(e)
            for sid, evs in by_section.items():
                value = orjson.dumps({"schema_version": 1, "section_id": sid, "events": evs})
                futures.append(await producer.send(topic, value=value, key=sid.encode()))
                records += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return records


async def produce_single(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=orjson.dumps(e), key=e["section_id"].encode())
            for e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def ceiling(bootstrap: str, topic: str, n: int) -> float:
    """A plain aiokafka loop that fetches and decodes every event, nothing more."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    seen = 0
    try:
        started = time.perf_counter()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for r in records:
                    for e in orjson.loads(r.value)["events"]:
                        seen += e["count"] > 0
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _metric(url: str, name: str) -> float:
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("worker not ready")


def run_worker(
    env: dict[str, str], n: int, log: Path, count_metric: str, module: list[str]
) -> tuple[float, float]:
    """Start a worker, wait for it, and time it to ``n`` counted; returns (ev/s, s)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**env, "BW_WEB_PORT": str(port), "BENCH_WEB_PORT": str(port)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *module],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, proc)
        started = time.perf_counter()
        while _metric(url, count_metric) < n:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited; see {log}")
            if time.perf_counter() - started > 900:
                raise SystemExit(f"worker too slow; see {log}")
            time.sleep(0.05)
        took = time.perf_counter() - started
        return n / took, took
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def published_counts(bootstrap: str, topic: str) -> dict[str, dict[str, int]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    latest: dict[str, dict[str, Any]] = {}
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500, max_records=10_000)
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    state = orjson.loads(r.value)
                    if state["version"] >= latest.get(state["section_id"], {}).get("version", 0):
                        latest[state["section_id"]] = state
    finally:
        await consumer.stop()
    return {sid: s["counts_24h"] for sid, s in latest.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--textbook-events", type=int, default=50_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bw-bench-"))
    broker = EmbeddedKafka(work / "kafka", heap="1g")
    broker.start()
    try:
        broker.wait_ready(timeout=90)
        bootstrap = broker.bootstrap
        sections_file = work / "sections.yaml"
        sections = twenty_sections(sections_file)
        prefix = "bench."
        asyncio.run(
            ensure_topics(
                CommonSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix), PARTITIONS
            )
        )
        events = make_events(args.events, sections)
        t0 = time.perf_counter()
        records = asyncio.run(produce_batched(bootstrap, prefix + "field-events", events))
        print(
            f"wrote {len(events):,} events in {records:,} records "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )

        ceiling_rate = asyncio.run(ceiling(bootstrap, prefix + "field-events", len(events)))
        print(f"ceiling (aiokafka fetch + orjson decode): {ceiling_rate:,.0f} ev/s", flush=True)

        env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
        env.update(
            {
                "BW_KAFKA_BOOTSTRAP": bootstrap,
                "BW_TOPIC_PREFIX": prefix,
                "BW_APP_ID": "bench-borderwatch",
                "BW_SECTIONS_FILE": str(sections_file),
                "BW_DATA_DIR": str(work / "agg"),
                "BW_LOG_LEVEL": "WARNING",
                "BW_FIELD_PARTITIONS": str(PARTITIONS),
            }
        )
        rate, took = run_worker(
            env,
            len(events),
            work / "borderwatch.log",
            "bw_aggregator_events_counted_total",
            ["-m", "services.aggregator"],
        )
        print(f"borderwatch worker: {rate:,.0f} ev/s ({took:.1f}s for {len(events):,})", flush=True)
        expected: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        for e in events:
            expected[e["section_id"]][e["kind"]] += e["count"]
        time.sleep(1.0)
        got = asyncio.run(published_counts(bootstrap, prefix + "section-state"))
        exact = all(got.get(sid) == expected[sid] for sid in sections)
        print(f"published 24 h counts equal the posted counts: {exact}", flush=True)

        sample = events[: args.textbook_events]
        asyncio.run(produce_single(bootstrap, "bench.single-events", sample))
        tb_env = {**env, "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": "bench.single-events"}
        tb_rate, tb_took = run_worker(
            tb_env,
            len(sample),
            work / "textbook.log",
            "bench_textbook_events_total",
            ["-m", "bench.textbook_faust"],
        )
        print(
            f"textbook Faust (1 windowed update per event): {tb_rate:,.0f} ev/s "
            f"({tb_took:.1f}s for {len(sample):,})",
            flush=True,
        )
        print()
        print("| pipeline | events/s | vs ceiling | vs textbook Faust |")
        print("|---|---:|---:|---:|")
        print(
            f"| aiokafka decode loop (ceiling) | {ceiling_rate:,.0f} | 1.00 | {ceiling_rate / tb_rate:.1f}x |"
        )
        print(
            f"| borderwatch worker | {rate:,.0f} | {rate / ceiling_rate:.2f} | {rate / tb_rate:.1f}x |"
        )
        print(f"| textbook Faust | {tb_rate:,.0f} | {tb_rate / ceiling_rate:.2f} | 1.0x |")
        print(f"(exact: {exact}; 20 sections x 6 kinds; {len(events):,} events; 2 cores)")
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
