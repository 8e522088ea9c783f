"""Benchmark: events/s through one aggregator worker, beside its peers, in one run.

    python -m bench.aggregator [--single 100000] [--batched 200000] [--peer-events 30000]
                               [--only borderwatch,textbook,quix,ceiling]
                               [--fill 200000,1000000,5000000 [--fill-slice 1000000]
                                [--fill-profile DIR]]

Starts a real embedded Kafka broker in a temporary directory and, for each of two
inputs, writes the events to a topic of its own from a backlog:

- **single**: one event per Kafka record over 200 sections (sensors post one
  event per request, so this is what ingest writes for them);
- **batched**: requests of 1,000 events over 20 sections, one record per
  section per request (~50 events a record), as ingest writes a bulk upload.

Record timestamps are the events' ``observed_at``, as ingest sets them. On each
input it measures, in the same run:

- borderwatch: one ``python -m services.aggregator`` worker, from ready to the
  last event counted (read from its /metrics), and checks that the published
  24 h counts per section equal the posted ones exactly;
- textbook Faust: one tumbling windowed-table update per event, iterating the
  stream (the pattern in Faust's docs), on ``--peer-events`` events;
- Quix Streams: the same per-section 1 h tumbling count (``bench/peers/``),
  installed by this script into ``bench/.peers/quix`` (never a project
  dependency), on ``--peer-events`` events;
- ceiling: a plain aiokafka loop that only fetches and decodes the records.

With ``--fill``, one worker also counts a backlog of 20 sections' events spread
over 7 days in time order, and the rate over the slice after each mark of
events held shows whether it stays flat as the window fills (with RSS); then it
is killed with SIGKILL and the successor's recovery time is measured (ready,
and counting a new event). A slice must outlast the host's swings: on session
9's host, 400,000-event slices (2 s) scattered by up to 2x, 1,000,000-event ones
by 9-22 %. ``--fill-profile DIR`` records each slice with py-spy and prints the
slices' profiles side by side, to tell growth from noise. Each slice also prints
the rest of the machine's CPU (the broker included) and the hypervisor's steal
over it: a slice the host slowed down says so.

Prints a table with the ratios and writes ``bench/results/aggregator-<date>.json``
(``aggregator-fill-<date>.json`` for a run of ``--fill`` alone).
Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.pyspy import PY_SPY, raw_stacks
from schemas.models import KINDS
from services.common.kafka import ensure_topics
from services.common.settings import DEFAULT_CONFIG_DIR, CommonSettings
from services.runtime.broker import EmbeddedKafka, free_port

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 6
PEERS = REPO / "bench" / ".peers"
QUIX_VERSION = "3.28.1"


def catalogue(dest: Path, n: int) -> list[str]:
    """The shipped catalogue plus synthetic sections up to ``n``."""
    data = yaml.safe_load((DEFAULT_CONFIG_DIR / "sections.yaml").read_text(encoding="utf-8"))
    shipped = data["sections"]
    sections = list(shipped[:n])
    k = 0
    while len(sections) < n:
        k += 1
        base = dict(shipped[k % len(shipped)])
        base["id"] = f"PL-X{k:03d}"
        base["name"] = f"Synthetic {k}"
        base["country"] = "PL"
        sections.append(base)
    dest.write_text(yaml.safe_dump({"sections": sections}, allow_unicode=True), "utf-8")
    return [s["id"] for s in sections]


def make_events(n: int, sections: list[str], seed: int = 1) -> list[dict[str, Any]]:
    import random

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


def _ms(event: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(event["observed_at"]).timestamp() * 1000)


def records_of(events: list[dict[str, Any]], shape: str) -> list[tuple[bytes, bytes, int]]:
    """(key, value, timestamp ms) per record: one event each (``single``), or as
    ingest groups a request of 1,000 events by section (``batched``)."""
    if shape == "single":
        return [
            (
                e["section_id"].encode(),
                orjson.dumps({"schema_version": 1, "section_id": e["section_id"], "events": [e]}),
                _ms(e),
            )
            for e in events
        ]
    out = []
    for start in range(0, len(events), 1000):
        by_section: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events[start : start + 1000]:
            by_section[e["section_id"]].append(e)
        for sid, evs in by_section.items():
            value = orjson.dumps({"schema_version": 1, "section_id": sid, "events": evs})
            out.append((sid.encode(), value, max(_ms(e) for e in evs)))
    return out


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=v, key=k, timestamp_ms=ts) for k, v, ts in records
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
    # Only the one series: the whole page of a 200-section worker, polled every
    # 20-50 ms, took 31 % of the measured worker's CPU (py-spy; before session 6).
    query = urllib.parse.urlencode({"name[]": name})
    try:
        with urllib.request.urlopen(f"{url}/metrics?{query}", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def spawn(env: dict[str, str], log: Path, module: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start a worker process on a free web port (in its own session, so it can be
    stopped with its children); returns it and its base URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *module],
            env={**env, "BW_WEB_PORT": str(port), "BENCH_WEB_PORT": str(port)},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{port}"


def run_worker(
    env: dict[str, str], n: int, log: Path, count_metric: str, module: list[str]
) -> dict[str, float]:
    """Start a worker, wait for it, and time it to ``n`` counted: ev/s, seconds,
    CPU seconds and peak RSS of the worker process."""
    import psutil

    proc, url = spawn(env, log, module)
    try:
        _wait_ready(url, proc)
        ps = psutil.Process(proc.pid)
        cpu0 = ps.cpu_times()
        started = time.perf_counter()
        rss = 0
        while _metric(url, count_metric) < n:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited; see {log}")
            if time.perf_counter() - started > 900:
                raise SystemExit(f"worker too slow; see {log}")
            rss = max(rss, ps.memory_info().rss)
            time.sleep(0.05)
        took = time.perf_counter() - started
        cpu1 = ps.cpu_times()
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        # Not timed: let borderwatch send the states it still has queued.
        deadline = time.monotonic() + 30
        while _metric(url, "bw_aggregator_publish_queue") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        return {"ev_per_s": n / took, "seconds": took, "cpu_seconds": cpu, "rss_mib": rss / 2**20}
    finally:
        _stop(proc)


async def published_counts(
    bootstrap: str, topic: str, window: str = "counts_24h"
) -> dict[str, dict[str, int]]:
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
    return {sid: s[window] for sid, s in latest.items()}


def quix_python() -> Path:
    """Quix Streams in a virtualenv of its own, made on first use."""
    python = PEERS / "quix" / "bin" / "python"
    probe = [str(python), "-c", "import quixstreams; print(quixstreams.__version__)"]
    ok = python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip()
    if ok != QUIX_VERSION:
        print(f"installing quixstreams=={QUIX_VERSION} into {PEERS / 'quix'} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS / "quix")], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"],
            check=True,
        )
    return python


def run_quix(bootstrap: str, topic: str, n: int, work: Path, log: Path) -> dict[str, float]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BW_")},
        "BENCH_BOOTSTRAP": bootstrap,
        "BENCH_TOPIC": topic,
        "BENCH_EVENTS": str(n),
        "BENCH_GROUP": f"bench-quix-{uuid.uuid4().hex[:8]}",
        "BENCH_STATE_DIR": str(work / f"quix-{topic}"),
    }
    with log.open("wb") as err:
        out = subprocess.run(
            [str(quix_python()), str(REPO / "bench" / "peers" / "quix_count.py")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=900,
            check=False,
        )
    lines = [line for line in out.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"quix peer printed no result; see {log}")
    result = json.loads(lines[-1])
    return {"ev_per_s": result["events"] / result["seconds"], "seconds": result["seconds"]}


def scenario(
    name: str,
    shape: str,
    n: int,
    n_sections: int,
    peer_n: int,
    only: set[str],
    bootstrap: str,
    work: Path,
) -> dict[str, Any]:
    sections_file = work / f"sections-{name}.yaml"
    sections = catalogue(sections_file, n_sections)
    prefix = f"bench-{name}."
    asyncio.run(
        ensure_topics(CommonSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix), PARTITIONS)
    )
    events = make_events(n, sections, seed=len(name))
    t0 = time.perf_counter()
    records = records_of(events, shape)
    asyncio.run(produce(bootstrap, prefix + "field-events", records))
    print(
        f"[{name}] wrote {len(events):,} events in {len(records):,} records over "
        f"{n_sections} sections ({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    out: dict[str, Any] = {
        "shape": shape,
        "events": n,
        "records": len(records),
        "sections": n_sections,
    }
    if "ceiling" in only:
        out["ceiling"] = {
            "ev_per_s": asyncio.run(ceiling(bootstrap, prefix + "field-events", len(events)))
        }
        print(f"[{name}] ceiling (aiokafka fetch + decode): {out['ceiling']['ev_per_s']:,.0f} ev/s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env.update(
        {
            "BW_KAFKA_BOOTSTRAP": bootstrap,
            "BW_TOPIC_PREFIX": prefix,
            "BW_APP_ID": f"bench-borderwatch-{name}",
            "BW_SECTIONS_FILE": str(sections_file),
            "BW_DATA_DIR": str(work / f"agg-{name}"),
            "BW_LOG_LEVEL": "WARNING",
            "BW_FIELD_PARTITIONS": str(PARTITIONS),
        }
    )
    if "borderwatch" in only:
        bw = run_worker(
            env,
            len(events),
            work / f"borderwatch-{name}.log",
            "bw_aggregator_events_counted_total",
            ["-m", "services.aggregator"],
        )
        expected: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        for e in events:
            expected[e["section_id"]][e["kind"]] += e["count"]
        time.sleep(1.0)
        got = asyncio.run(published_counts(bootstrap, prefix + "section-state"))
        differ = [sid for sid in sections if got.get(sid) != expected[sid]]
        bw["exact"] = not differ
        if differ:
            sid = differ[0]
            print(
                f"[{name}] {len(differ)} sections differ, e.g. {sid}: published "
                f"{got.get(sid)}, posted {expected[sid]}",
                flush=True,
            )
        out["borderwatch"] = bw
        print(
            f"[{name}] borderwatch worker: {bw['ev_per_s']:,.0f} ev/s ({bw['seconds']:.1f}s, "
            f"{bw['cpu_seconds'] / bw['seconds']:.0%} of a core, RSS {bw['rss_mib']:.0f} MiB), "
            f"exact: {bw['exact']}",
            flush=True,
        )
    peer_topic = f"bench-{name}-peer"
    if only & {"textbook", "quix"}:
        asyncio.run(create_topic(bootstrap, peer_topic))
        asyncio.run(produce(bootstrap, peer_topic, records_of(events[:peer_n], shape)))
    if "textbook" in only:
        tb_env = {**env, "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": peer_topic}
        out["textbook_faust"] = run_worker(
            tb_env,
            peer_n,
            work / f"textbook-{name}.log",
            "bench_textbook_events_total",
            ["-m", "bench.textbook_faust"],
        )
        print(f"[{name}] textbook Faust: {out['textbook_faust']['ev_per_s']:,.0f} ev/s", flush=True)
    if "quix" in only:
        out["quix_streams"] = run_quix(
            bootstrap, peer_topic, peer_n, work, work / f"quix-{name}.log"
        )
        print(f"[{name}] Quix Streams: {out['quix_streams']['ev_per_s']:,.0f} ev/s", flush=True)
    return out


@dataclass(frozen=True)
class Reading:
    """One poll of the fill: when, the worker's RSS (MiB) and CPU seconds, and the
    whole machine's busy and steal seconds (``psutil.cpu_times()``, all CPUs)."""

    at: float
    rss_mib: float
    worker_cpu: float
    machine_busy: float
    steal: float


def slice_figures(first: Reading, last: Reading, events: int) -> dict[str, float] | None:
    """The figures of one slice from the readings at its ends; None when one poll
    saw the whole slice.

    The steal and the rest of the machine's CPU tell a slow slice of a host that
    took the CPUs away (steal) or ran something else from one whose work grew.
    (Reading a slice in parts does not tell more: a batch of a backlog is up to
    ``BW_BATCH_MAX`` records, ~250,000 events, so parts of a slice are timed to
    within a batch.)"""
    if last.at == first.at:
        return None
    seconds = last.at - first.at
    worker = last.worker_cpu - first.worker_cpu
    return {
        "ev_per_s": events / seconds,
        "rss_mib": first.rss_mib,
        "worker_cpu_us_per_event": worker / events * 1e6,
        # in % of one CPU over the slice; the rest of the machine includes the broker
        "rest_of_machine_pct": max(0.0, last.machine_busy - first.machine_busy - worker)
        / seconds
        * 100,
        "steal_pct": (last.steal - first.steal) / seconds * 100,
    }


def fill(
    n_total: int,
    marks: list[int],
    slice_n: int,
    bootstrap: str,
    work: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    """The window fills: ``n_total`` events of 20 sections spread over 7 days in time
    order (ingest's records), counted from a backlog by one worker; the rate over
    the ``slice_n`` events after each mark of events held, RSS there, the exact
    7-day counts at the end, then a SIGKILL and the successor's recovery time.

    ``profile``: a directory where py-spy records the worker over each mark's slice
    (``fill-<mark>.txt``, py-spy's raw stacks; ``--nonblocking``, so it never pauses
    the worker and the slices may overlap), to see what costs more at one mark than
    at another."""
    import random

    import psutil

    sections_file = work / "sections-fill.yaml"
    sections = catalogue(sections_file, 20)
    prefix = "bench-fill."
    settings = CommonSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    asyncio.run(ensure_topics(settings, PARTITIONS))
    rng = random.Random(7)
    now = datetime.now(UTC).timestamp()
    span = 7 * 24 * 3600 - 3 * 3600
    expected: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))

    def chunks() -> Any:
        for start in range(0, n_total, 50_000):
            n = min(50_000, n_total - start)
            events = []
            for i in range(n):
                at = now - span + span * (start + i) / n_total
                e = {
                    "schema_version": 1,
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "kind": rng.choice(KINDS),
                    "section_id": rng.choice(sections),
                    "observed_at": datetime.fromtimestamp(at, UTC).isoformat(),
                    "count": 1,
                    "source": {"type": "thermal_camera", "id": "TC-1"},
                    "confidence": "high",
                }
                expected[e["section_id"]][e["kind"]] += 1
                events.append(e)
            yield records_of(events, "batched")

    t0 = time.perf_counter()
    for recs in chunks():
        asyncio.run(produce(bootstrap, prefix + "field-events", recs))
    print(f"[fill] wrote {n_total:,} events over 7 days ({time.perf_counter() - t0:.0f}s)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env.update(
        {
            "BW_KAFKA_BOOTSTRAP": bootstrap,
            "BW_TOPIC_PREFIX": prefix,
            "BW_APP_ID": "bench-borderwatch-fill",
            "BW_SECTIONS_FILE": str(sections_file),
            "BW_DATA_DIR": str(work / "agg-fill"),
            "BW_LOG_LEVEL": "WARNING",
            "BW_FIELD_PARTITIONS": str(PARTITIONS),
        }
    )

    counted = "bw_aggregator_events_counted_total"
    proc, url = spawn(env, work / "borderwatch-fill.log", ["-m", "services.aggregator"])
    out: dict[str, Any] = {"events": n_total, "sections": 20, "marks": {}}
    try:
        _wait_ready(url, proc)
        ps = psutil.Process(proc.pid)
        points = sorted({m for m in marks} | {m + slice_n for m in marks} | {n_total})
        seen: dict[int, Reading] = {}
        spies: dict[int, subprocess.Popen[bytes]] = {}  # mark -> py-spy over its slice
        started = time.perf_counter()
        while len(seen) < len(points):
            c = _metric(url, counted)
            reached = [p for p in points if p not in seen and c >= p]
            if reached:
                # One reading per poll: points passed in the same poll share it.
                cpu, machine = ps.cpu_times(), psutil.cpu_times()
                reading = Reading(
                    time.perf_counter(),
                    ps.memory_info().rss / 2**20,
                    cpu.user + cpu.system,
                    machine.user + machine.nice + machine.system + machine.irq + machine.softirq,
                    machine.steal,
                )
                seen.update(dict.fromkeys(reached, reading))
            if profile is not None:
                for m in marks:
                    if m in seen and m not in spies and m + slice_n not in seen:
                        spies[m] = _spy(proc.pid, profile / f"fill-{m}.txt")
                    if m in spies and m + slice_n in seen and spies[m].returncode is None:
                        spies[m].send_signal(signal.SIGINT)
                        spies[m].wait(timeout=30)
            if proc.poll() is not None or time.perf_counter() - started > 1800:
                raise SystemExit(f"fill: worker stopped or too slow; see {work}")
            time.sleep(0.02)
        for m in marks:
            figures = slice_figures(seen[m], seen[m + slice_n], slice_n)
            if figures is None:  # one batch counted the whole slice between two polls
                print(
                    f"[fill] {m:>9,} events held: the next {slice_n:,} took one poll; "
                    "too short a slice to time",
                    flush=True,
                )
                continue
            out["marks"][str(m)] = figures
            # CPU per event: steadier than the rate on a shared machine.
            print(
                f"[fill] {m:>9,} events held: {figures['ev_per_s']:,.0f} ev/s over the next "
                f"{slice_n:,} ({figures['worker_cpu_us_per_event']:.2f} µs of worker CPU each), "
                "worker RSS "
                f"{figures['rss_mib']:.0f} MiB; rest of the machine "
                f"{figures['rest_of_machine_pct']:.0f} %, steal {figures['steal_pct']:.1f} %",
                flush=True,
            )
        if profile is not None:
            for line in profile_table(profile, marks, slice_n):
                print(f"[fill] {line}", flush=True)
        out["overall_ev_per_s"] = n_total / (seen[n_total].at - started)
        out["rss_end_mib"] = ps.memory_info().rss / 2**20
        deadline = time.monotonic() + 60
        while _metric(url, "bw_aggregator_publish_queue") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        got = asyncio.run(published_counts(bootstrap, prefix + "section-state", "counts_7d"))
        out["exact"] = all(got.get(sid) == expected[sid] for sid in sections)
        print(f"[fill] published 7-day counts equal the posted ones: {out['exact']}")
        changelog = _metric(url, "bw_aggregator_changelog_bytes_total")
        out["changelog_bytes_per_event"] = changelog / n_total
        # Recovery: SIGKILL, a successor restores the changelog and counts again.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.perf_counter()
        asyncio.run(
            produce(
                bootstrap,
                prefix + "field-events",
                records_of(
                    [
                        {**e, "observed_at": datetime.now(UTC).isoformat()}
                        for e in make_events(1, sections)
                    ],
                    "single",
                ),
            )
        )
        proc, url = spawn(
            env, work / "borderwatch-fill-successor.log", ["-m", "services.aggregator"]
        )
        _wait_ready(url, proc, timeout=300)
        ready = time.perf_counter() - killed
        while _metric(url, counted) < 1:
            if proc.poll() is not None or time.perf_counter() - killed > 300:
                raise SystemExit("fill: the successor did not count")
            time.sleep(0.05)
        out["recovery"] = {"ready_s": ready, "counting_s": time.perf_counter() - killed}
        print(
            f"[fill] after a SIGKILL with {n_total:,} events held: successor ready in "
            f"{ready:.1f}s, counting again {out['recovery']['counting_s']:.1f}s after the kill",
            flush=True,
        )
    finally:
        _stop(proc)
    return out


def table(results: dict[str, Any]) -> None:
    print()
    print("| input | pipeline | events/s | vs textbook Faust | vs Quix Streams | vs ceiling |")
    print("|---|---|---:|---:|---:|---:|")
    for name, res in results["scenarios"].items():
        tb = res.get("textbook_faust", {}).get("ev_per_s")
        qx = res.get("quix_streams", {}).get("ev_per_s")
        ce = res.get("ceiling", {}).get("ev_per_s")
        for label, key in (
            ("borderwatch", "borderwatch"),
            ("textbook Faust", "textbook_faust"),
            ("Quix Streams", "quix_streams"),
            ("aiokafka decode (ceiling)", "ceiling"),
        ):
            if key not in res:
                continue
            rate = res[key]["ev_per_s"]
            ratios = [f"{rate / d:.2f}x" if d else "-" for d in (tb, qx, ce)]
            print(f"| {name} | {label} | {rate:,.0f} | " + " | ".join(ratios) + " |")
    print(f"(2 cores; {results['command']})")


def stack_counts(raw: Path) -> tuple[int, dict[str, int]]:
    """py-spy's raw stacks (``--nolineno``): the samples, and per function (``name
    (file)``, the file without its directories) the samples it is on the stack of."""
    total = 0
    inclusive: dict[str, int] = defaultdict(int)
    for frames, n in raw_stacks(raw):
        if not frames:
            continue
        total += n
        for name in {_short(f) for f in frames}:
            inclusive[name] += n
    return total, dict(inclusive)


def _short(frame: str) -> str:
    name, sep, where = frame.rpartition(" (")
    return f"{name} ({where.rstrip(')').rsplit('/', 1)[-1]})" if sep else frame


def profile_table(profile: Path, marks: list[int], slice_n: int, top: int = 15) -> list[str]:
    """Lines comparing the marks' profiles: samples per 1,000,000 events counted, in
    all and for the functions most often on the stack (below the outer frames that
    hold most samples). A function whose cost cannot depend on what is held
    (decoding, hashing an id) moving as much as the whole shows the host's noise,
    not growth."""
    missing = [m for m in marks if not (profile / f"fill-{m}.txt").exists()]
    if missing:
        return [
            f"no profile of the slices after {', '.join(map(str, missing))} events held: "
            "a slice counted between two polls, or py-spy could not read the worker's "
            "memory (root or CAP_SYS_PTRACE)"
        ]
    counts = {m: stack_counts(profile / f"fill-{m}.txt") for m in marks}
    scale = 1_000_000 / slice_n
    head = " | ".join(f"{m:,} held" for m in marks)
    lines = [
        "py-spy samples per 1,000,000 events counted (200 Hz, so 5 ms each):",
        f"| function | {head} |",
        "|---|" + "---:|" * len(marks),
        "| (all) | " + " | ".join(f"{counts[m][0] * scale:,.0f}" for m in marks) + " |",
    ]
    last = counts[marks[-1]][1]
    names = sorted(last, key=lambda k: -last[k])
    # The outer frames (start-up, the agent's loop) hold most samples and say nothing.
    shown = [k for k in names if last[k] * 2 < counts[marks[-1]][0]][:top]
    for name in shown:
        row = " | ".join(f"{counts[m][1].get(name, 0) * scale:,.0f}" for m in marks)
        lines.append(f"| {name} | {row} |")
    return lines


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` (raw stacks to ``out``) until it gets SIGINT."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nolineno",
            "--threads",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=100_000, help="events, one a record")
    parser.add_argument("--batched", type=int, default=200_000, help="events, ingest's records")
    parser.add_argument("--peer-events", type=int, default=30_000)
    parser.add_argument("--only", default="borderwatch,textbook,quix,ceiling")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--fill",
        default="",
        help="events held at which to measure, e.g. 200000,1000000,5000000 (then a SIGKILL)",
    )
    parser.add_argument(
        "--fill-slice",
        type=int,
        default=1_000_000,
        help="events counted after each mark: a slice must outlast the host's swings",
    )
    parser.add_argument(
        "--fill-profile",
        type=Path,
        help="a directory: py-spy records the worker over each mark's slice there",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="bw-bench-"))
    broker = EmbeddedKafka(work / "kafka", heap="1g")
    broker.start()
    results: dict[str, Any] = {
        "command": "python -m bench.aggregator " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scenarios": {},
    }
    try:
        broker.wait_ready(timeout=90)
        if args.single:
            results["scenarios"]["single"] = scenario(
                "single", "single", args.single, 200, args.peer_events, only, broker.bootstrap, work
            )
        if args.batched:
            results["scenarios"]["batched"] = scenario(
                "batched",
                "batched",
                args.batched,
                20,
                args.peer_events,
                only,
                broker.bootstrap,
                work,
            )
        if args.fill:
            marks = sorted(int(m) for m in args.fill.split(","))
            results["fill"] = fill(
                marks[-1] + args.fill_slice,
                marks,
                args.fill_slice,
                broker.bootstrap,
                work,
                args.fill_profile,
            )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    # A fill-only run (--single 0 --batched 0) has a file of its own, so it does not
    # replace the day's throughput figures.
    kind = "aggregator-fill" if results.get("fill") and not results["scenarios"] else "aggregator"
    path = args.out / f"{kind}-{datetime.now(UTC):%Y-%m-%d}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
