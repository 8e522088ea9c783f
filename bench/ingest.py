"""Benchmark: field events/s accepted by ingest, beside a bare aiokafka producer.

    python -m bench.ingest [--events 200000] [--batch 1000] [--clients 4] [--client raw]
    python -m bench.ingest --procs 1,2 [--clients 8]     # scale-out on one host

Starts a real embedded Kafka broker in a temporary directory and one ingest
process as it runs in production (``uvicorn services.ingest.app:create_app
--factory`` on 127.0.0.1, authentication on), then measures, in one run:

- ingest: ``--clients`` concurrent HTTP clients each posting NDJSON batches of
  ``--batch`` unique events with a bearer token; an event counts when its 202
  listed it as accepted (so the broker acknowledged it, acks=all). Prints
  events/s and the p50/p99 request latency. The clients are httpx's by default;
  ``--client raw`` posts ready-made requests on keep-alive sockets, so that the
  clients, which share the 2 cores, do not cap the load (httpx costs ~1 ms of
  their CPU a request: about 1,000 requests/s for all of them together).
- ceiling: a bare aiokafka producer (acks=all, idempotent, the same settings
  as ingest's) sending the same events, one record per event, ``--clients``
  concurrent senders each waiting for the acks of one batch before sending the
  next: what a client writing straight to Kafka would get.
- for reference, the same bare producer sending the records ingest makes of
  each batch (one per section, pre-serialised): Kafka's cost alone, without
  HTTP, parsing and validation.

Prints figures and the ratio; it is not a pass/fail test. The rate limit is
turned off (it is a policy, not a cost); everything else is the default.

``--procs N[,M...]``: for each N, N ingest processes (``python -m
services.ingest``, as ``borderwatch up --ingest N`` runs them) share one port
with SO_REUSEPORT, each also on a port of its own. Every request opens a new
connection, as many field units would, so the kernel spreads them over the
processes (keep-alive connections would stick to one). Prints each process's
events/s (from its own ``/metrics``) and CPU, the total, and the total against
the first N. The ceiling runs are skipped in that mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil  # type: ignore[import-untyped]

from bench.feeds import RawHttp
from schemas.models import KINDS, FieldEvent
from services.common.auth import create_token
from services.common.catalogue import Catalogue
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import DEFAULT_CONFIG_DIR, CommonSettings
from services.ingest.producer import section_records
from services.runtime.broker import EmbeddedKafka, free_port, tail

REPO = Path(__file__).resolve().parents[1]


def make_batches(n: int, batch: int, seed: int = 4) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    sections = list(Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml"))
    now = datetime.now(UTC)
    events = [
        {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "kind": rng.choice(KINDS),
            "section_id": rng.choice(sections),
            "observed_at": (now - timedelta(seconds=rng.uniform(0, 3600))).isoformat(),
            "count": rng.randint(1, 12),
            "source": {"type": "thermal_camera", "id": f"TC-{rng.randint(1, 40)}"},
            "confidence": rng.choice(["low", "medium", "high"]),
            "location": {
                "lat": round(rng.uniform(53, 56), 5),
                "lon": round(rng.uniform(23, 28), 5),
            },
        }
        for _ in range(n)
    ]
    return [events[i : i + batch] for i in range(0, n, batch)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- ingest over HTTP ------------------------------------------------------------------


def _ingest_env(bootstrap: str, prefix: str, tokens: Path) -> dict[str, str]:
    """The environment of a benchmarked ingest process (the rate limit off: it is a
    policy, not a cost)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env.update(
        {
            "BW_KAFKA_BOOTSTRAP": bootstrap,
            "BW_TOPIC_PREFIX": prefix,
            "BW_TOKENS_FILE": str(tokens),
            "BW_RATE_LIMIT_PER_SECOND": "0",
            "BW_LOG_LEVEL": "WARNING",
        }
    )
    return env


def start_ingest(
    bootstrap: str, prefix: str, workdir: Path, app: str = "services.ingest.app:create_app"
) -> tuple[subprocess.Popen[bytes], str, str]:
    tokens = workdir / "tokens.json"
    token = create_token(tokens, ["ingest:field"], "bench")
    port = free_port()
    env = _ingest_env(bootstrap, prefix, tokens)
    log = (workdir / "ingest.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ingest exited:\n{tail(workdir / 'ingest.log')}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return proc, url, token
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"ingest not ready:\n{tail(workdir / 'ingest.log')}")


@contextmanager
def broker_and_ingest(
    workdir: Path,
) -> Iterator[tuple[EmbeddedKafka, subprocess.Popen[bytes], str, str]]:
    """A real embedded broker with the ``bench.`` topics and one ingest process on it,
    as ``bench.ingest`` measures it: (broker, ingest, its URL, a field token). Both
    are stopped on the way out."""
    broker = EmbeddedKafka(workdir / "kafka", heap="768m")
    broker.start()
    ingest: subprocess.Popen[bytes] | None = None
    try:
        broker.wait_ready(timeout=90)
        kafka = CommonSettings(kafka_bootstrap=broker.bootstrap, topic_prefix="bench.")
        asyncio.run(ensure_topics(kafka, 6))
        ingest, url, token = start_ingest(broker.bootstrap, "bench.", workdir)
        yield broker, ingest, url, token
    finally:
        if ingest is not None and ingest.poll() is None:
            os.killpg(ingest.pid, signal.SIGTERM)
            try:
                ingest.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(ingest.pid, signal.SIGKILL)
        broker.stop()


def start_ingest_replicas(
    bootstrap: str, prefix: str, workdir: Path, procs: int
) -> tuple[list[subprocess.Popen[bytes]], str, list[str], str]:
    """``procs`` ingest processes on one SO_REUSEPORT port, each also on its own port:
    (processes, shared URL, each one's own URL, token)."""
    tokens = workdir / "tokens.json"
    token = create_token(tokens, ["ingest:field"], f"bench-{procs}")
    shared = free_port()
    env = _ingest_env(bootstrap, prefix, tokens)
    env.update({"BW_HOST": "127.0.0.1", "BW_PORT": str(shared), "BW_REUSE_PORT": "true"})
    started: list[subprocess.Popen[bytes]] = []
    own: list[str] = []
    for i in range(procs):
        port = free_port()
        log = (workdir / f"ingest-{procs}-{i}.log").open("wb")
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.ingest"],
                env={**env, "BW_REPLICA_PORT": str(port)},
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        own.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    for i, (proc, url) in enumerate(zip(started, own, strict=True)):
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_all(started)
                raise SystemExit(
                    f"ingest {i} not ready:\n{tail(workdir / f'ingest-{procs}-{i}.log')}"
                )
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
    return started, f"http://127.0.0.1:{shared}", own, token


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def accepted_total(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("bw_ingest_events_accepted_total{")
    )


def run_procs(
    bootstrap: str, workdir: Path, procs: int, args: argparse.Namespace
) -> tuple[float, str]:
    """One --procs run; returns (total events/s, the printed lines)."""
    warm = make_batches(20 * args.batch * procs, args.batch, seed=100 + procs)
    batches = make_batches(args.events, args.batch, seed=200 + procs)
    bodies = [b"\n".join(orjson.dumps(e) for e in batch) for batch in batches]
    warm_bodies = [b"\n".join(orjson.dumps(e) for e in batch) for batch in warm]
    prefix = f"bench{procs}."
    asyncio.run(ensure_topics(CommonSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix), 6))
    started, url, own, token = start_ingest_replicas(bootstrap, prefix, workdir, procs)
    try:
        asyncio.run(post_all(url, token, warm_bodies, args.clients, reconnect=True))
        ps = [psutil.Process(p.pid) for p in started]
        me = psutil.Process()
        cpu0 = [sum(p.cpu_times()[:2]) for p in ps]
        me0 = sum(me.cpu_times()[:2])
        psutil.cpu_percent()  # starts the machine-wide measurement
        acc0 = [accepted_total(u) for u in own]
        accepted, took, latencies, failed = asyncio.run(
            post_all(url, token, bodies, args.clients, reconnect=True)
        )
        cpu1 = [sum(p.cpu_times()[:2]) for p in ps]
        me1 = sum(me.cpu_times()[:2])
        machine = psutil.cpu_percent()
        acc1 = [accepted_total(u) for u in own]
    finally:
        stop_all(started)
    rate = accepted / took
    lines = [
        f"--procs {procs}: {rate:>9,.0f} events/s accepted in all ({accepted:,} in "
        f"{took:.1f}s, {failed} failed requests, {args.clients} clients, a connection per "
        f"request); latency p50 {statistics.median(latencies) * 1000:.0f} ms, p99 "
        f"{percentile(latencies, 0.99) * 1000:.0f} ms; the clients (this process) "
        f"{(me1 - me0) / took:.0%} of one core; the whole machine {machine:.0f}% busy "
        "(every user's processes)"
    ]
    for i in range(procs):
        lines.append(
            f"    process {i + 1}: {(acc1[i] - acc0[i]) / took:>9,.0f} events/s, "
            f"CPU {(cpu1[i] - cpu0[i]) / took:.0%} of one core"
        )
    return rate, "\n".join(lines)


@contextlib.asynccontextmanager
async def _poster(
    url: str, token: str, *, reconnect: bool, raw: bool
) -> AsyncIterator[Callable[[bytes], Awaitable[tuple[int, bytes]]]]:
    """One client's ``post(body) -> (status, answer)`` to ``/v1/field-events``."""
    auth = {"Authorization": f"Bearer {token}"}
    if raw:
        host, _, port = url.removeprefix("http://").partition(":")
        conn = RawHttp(host, int(port), auth, content_type="application/x-ndjson")

        async def post_raw(body: bytes) -> tuple[int, bytes]:
            return await conn.post("/v1/field-events", body)

        try:
            yield post_raw
        finally:
            await conn.close()
        return
    limits = httpx.Limits(max_keepalive_connections=0) if reconnect else httpx.Limits()
    headers = auth | {"content-type": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers, limits=limits) as http:

        async def post_httpx(body: bytes) -> tuple[int, bytes]:
            resp = await http.post("/v1/field-events", content=body)
            return resp.status_code, resp.content

        yield post_httpx


async def post_all(
    url: str,
    token: str,
    bodies: list[bytes],
    clients: int,
    *,
    reconnect: bool = False,
    raw: bool = False,
) -> tuple[int, float, list[float], int]:
    """(events accepted, seconds, request latencies, failed requests). ``reconnect``:
    a new connection per request (httpx only).

    ``raw``: clients that cost next to nothing (``bench.feeds``' :class:`RawHttp`:
    a ready-made HTTP/1.1 request on a keep-alive connection, one at a time, as
    httpx sends them). httpx spends ~1 ms of the benchmark's CPU on each request,
    so with one core for all clients it caps the offered load near 1,000
    requests/s and ingest idles between requests; raw clients offer what ingest
    can take, and its CPU per request is then what a loaded ingest costs."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    accepted = 0
    failed = 0

    async def client() -> None:
        nonlocal accepted, failed
        async with _poster(url, token, reconnect=reconnect, raw=raw) as post:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                status, answer = await post(body)
                latencies.append(time.perf_counter() - started)
                if status == 202:
                    accepted += len(orjson.loads(answer)["accepted"])
                else:
                    failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return accepted, time.perf_counter() - started, latencies, failed


# --- the ceiling: a bare producer ------------------------------------------------------


async def produce_all(
    settings: CommonSettings,
    topic: str,
    batches: list[list[tuple[bytes, bytes, int, int]]],
    clients: int,
) -> tuple[int, float, list[float]]:
    """(records' events produced, seconds, per-batch latencies) -- batches of records."""
    producer = make_producer(settings)
    await producer.start()
    queue: asyncio.Queue[list[tuple[bytes, bytes, int, int]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    latencies: list[float] = []
    done = 0

    async def sender() -> None:
        nonlocal done
        while not queue.empty():
            records = queue.get_nowait()
            started = time.perf_counter()
            futures = [
                await producer.send(topic, value=value, key=key, timestamp_ms=ts)
                for key, value, ts, _ in records
            ]
            await asyncio.gather(*futures)
            latencies.append(time.perf_counter() - started)
            done += sum(n for *_, n in records)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        took = time.perf_counter() - started
    finally:
        await producer.stop()
    return done, took, latencies


def ceiling_records(
    batches: list[list[dict[str, Any]]],
) -> list[list[tuple[bytes, bytes, int, int]]]:
    """Exactly the records ingest produces for each batch: (key, value, timestamp, events)."""
    out = []
    for batch in batches:
        events = [FieldEvent.model_validate(e) for e in batch]
        out.append(
            [
                (r.section_id.encode(), r.value, r.timestamp_ms, len(r.positions))
                for r in section_records(events, 500)
            ]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="httpx (the default; ~1 ms of the benchmark's CPU a request caps the load "
        "near 1,000 requests/s) or raw (ready-made requests on keep-alive sockets: the "
        "load ingest can take)",
    )
    parser.add_argument(
        "--procs",
        help="ingest processes on one port (SO_REUSEPORT), comma separated: 1,2",
    )
    args = parser.parse_args()
    if args.procs:
        main_procs(args, [int(n) for n in args.procs.split(",")])
        return

    warmup = make_batches(20 * args.batch, args.batch, seed=99)
    batches = make_batches(args.events, args.batch)
    bodies = [b"\n".join(orjson.dumps(e) for e in batch) for batch in batches]
    warm_bodies = [b"\n".join(orjson.dumps(e) for e in batch) for batch in warmup]
    records = ceiling_records(batches)
    warm_records = ceiling_records(warmup)
    per_event = [
        [(e["section_id"].encode(), orjson.dumps(e), 0, 1) for e in batch] for batch in batches
    ]
    # The client side holds every event in memory: keep the collector from walking
    # that heap again and again (ingest does the same for its own start-up heap).
    gc.collect()
    gc.freeze()
    size = sum(len(b) for b in bodies) / len(bodies)
    print(
        f"{args.events} events in NDJSON batches of {args.batch} ({size / 1024:.0f} KiB each), "
        f"{args.clients} concurrent {args.client} clients; {os.cpu_count()} CPUs",
        flush=True,
    )

    with (
        tempfile.TemporaryDirectory(prefix="bw-bench-ingest-") as tmp,
        broker_and_ingest(Path(tmp)) as (broker, ingest, url, token),
    ):
        ceiling_kafka = CommonSettings(kafka_bootstrap=broker.bootstrap, topic_prefix="ceil.")
        asyncio.run(ensure_topics(ceiling_kafka, 6))

        raw = args.client == "raw"
        asyncio.run(post_all(url, token, warm_bodies, args.clients, raw=raw))
        ingest_ps = psutil.Process(ingest.pid)
        broker_ps = psutil.Process(broker.process.pid) if broker.process else None
        cpu0 = ingest_ps.cpu_times()
        bcpu0 = broker_ps.cpu_times() if broker_ps else None
        accepted, took, latencies, failed = asyncio.run(
            post_all(url, token, bodies, args.clients, raw=raw)
        )
        cpu1 = ingest_ps.cpu_times()
        bcpu1 = broker_ps.cpu_times() if broker_ps else None
        ingest_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        broker_cpu = (
            (bcpu1.user + bcpu1.system) - (bcpu0.user + bcpu0.system)
            if bcpu0 and bcpu1
            else float("nan")
        )
        rate = accepted / took

        asyncio.run(produce_all(ceiling_kafka, "ceil.field-events", warm_records, args.clients))
        produced, ctook, clat = asyncio.run(
            produce_all(ceiling_kafka, "ceil.field-events", per_event, args.clients)
        )
        crate = produced / ctook
        rproduced, rtook, rlat = asyncio.run(
            produce_all(ceiling_kafka, "ceil.field-events", records, args.clients)
        )
        rrate = rproduced / rtook

    ms = 1000
    print(
        f"ingest (HTTP, validate, dedupe, acks=all): {rate:>9,.0f} events/s accepted "
        f"({accepted:,} in {took:.1f}s, {failed} failed requests); request latency "
        f"p50 {statistics.median(latencies) * ms:.0f} ms, p99 {percentile(latencies, 0.99) * ms:.0f} ms; "
        f"CPU: ingest {ingest_cpu / took:.0%}, broker {broker_cpu / took:.0%} of one core"
    )
    print(
        f"ceiling: bare aiokafka producer, one record per event, acks=all: {crate:>9,.0f} events/s "
        f"({produced:,} in {ctook:.1f}s); batch latency p50 {statistics.median(clat) * ms:.0f} ms, "
        f"p99 {percentile(clat, 0.99) * ms:.0f} ms"
    )
    requests = len(latencies)
    if requests:
        # CPU time per request holds steady when other work shares the machine;
        # the rates above do not.
        print(
            f"ingest CPU per request: {ingest_cpu / requests * ms:.3f} ms "
            f"({requests:,} requests of {args.batch} events)"
        )
    print(f"ratio ingest / ceiling: {rate / crate:.2f}")
    print(
        f"(Kafka side alone: the same bare producer sending ingest's ready-made section "
        f"records: {rrate:,.0f} events/s, batch p50 {statistics.median(rlat) * ms:.0f} ms; "
        f"ingest / that: {rate / rrate:.2f})"
    )


def main_procs(args: argparse.Namespace, counts: list[int]) -> None:
    gc.collect()
    gc.freeze()
    load = os.getloadavg()[0]
    print(
        f"{args.events} events per run in NDJSON batches of {args.batch}; ingest processes "
        f"{counts}; {os.cpu_count()} CPUs (shared: load average {load:.1f} at the start)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bw-bench-ingest-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedKafka(workdir / "kafka", heap="768m")
        broker.start()
        rates: list[float] = []
        try:
            broker.wait_ready(timeout=90)
            broker_ps = psutil.Process(broker.process.pid) if broker.process else None
            for n in counts:
                b0 = sum(broker_ps.cpu_times()[:2]) if broker_ps else 0.0
                t0 = time.perf_counter()
                rate, lines = run_procs(broker.bootstrap, workdir, n, args)
                b1 = sum(broker_ps.cpu_times()[:2]) if broker_ps else 0.0
                rates.append(rate)
                print(lines)
                print(
                    f"    broker CPU over the run (incl. start-up and warm-up): "
                    f"{(b1 - b0) / (time.perf_counter() - t0):.0%} of one core; "
                    f"against --procs {counts[0]}: x{rate / rates[0]:.2f}",
                    flush=True,
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
