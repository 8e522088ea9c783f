"""Benchmark: what a single-event ingest request costs in each of its parts, alone.

    python -m bench.ingest_floors [--requests 4000] [--clients 4]

Prints CPU time per request of:

- ``http``: uvicorn (as ``bench.ingest`` starts it) with a null ASGI app that reads
  the body and answers 202, under ``--clients`` (4) keep-alive httpx clients posting one event each;
- ``kafka``: a bare aiokafka producer with ingest's settings (acks=all, idempotent,
  no linger) on a real embedded broker, ``--clients`` senders that each send one record with
  the ``bw-received-ms`` header and wait for its ack;
- ``stub``: ingest over HTTP as ``bench.ingest --batch 1`` runs it (uvicorn, the same
  clients and bodies), with its producer replaced by a stub whose sends are
  acknowledged at once: ingest without Kafka;
- ``door``: ingest's own code in-process, ``POST /v1/field-events`` through the app
  with authentication on and a stub producer whose sends are acknowledged at
  once (no uvicorn, no Kafka), with the pure-ASGI door and without it.

Set beside ``python -m bench.ingest --batch 1``'s "ingest CPU per request"; the sum
is a floor, not a forecast (in ingest both share one event loop and one cache).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil  # type: ignore[import-untyped]

from bench.ingest import make_batches, start_ingest
from bench.ingest import post_all as bench_post_all
from services.common.auth import create_token
from services.common.headers import received_header
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import CommonSettings
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.runtime.broker import EmbeddedKafka, free_port
from services.runtime.supervisor import wait_http_ready

CLIENTS = 4
NULL_APP = """
BODY = b'{"accepted":["7f1d2c3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f"],"duplicate":[],"rejected":[]}'


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-length", str(len(BODY)).encode()), (b"content-type", b"application/json")]
    status = 202 if scope["method"] == "POST" else 200
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
"""


def event_body() -> bytes:
    observed = datetime.now(UTC) - timedelta(minutes=1)
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "kind": "detection",
            "section_id": "LV-KRA",
            "observed_at": observed.isoformat(),
            "count": 3,
            "source": {"type": "thermal_camera", "id": "TC-1"},
            "confidence": "high",
            "location": {"lat": 55.1, "lon": 27.2},
        }
    )


# --- http ------------------------------------------------------------------------------


async def post_all(url: str, bodies: list[bytes]) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": "Bearer bw_x_y", "content-type": "application/x-ndjson"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
            while not queue.empty():
                resp = await http.post("/v1/field-events", content=queue.get_nowait())
                if resp.status_code != 202:
                    raise SystemExit(f"null app answered {resp.status_code}")

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


def http_floor(requests: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bw-bench-floor-") as tmp:
        (Path(tmp) / "nullapp.py").write_text(NULL_APP)
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "nullapp:app", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
        log = Path(tmp) / "uvicorn.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http_ready(url + "/", proc, name="uvicorn", log_path=log, timeout=30)
            asyncio.run(post_all(url, [event_body() for _ in range(200)]))
            ps = psutil.Process(proc.pid)
            before = ps.cpu_times()
            asyncio.run(post_all(url, [event_body() for _ in range(requests)]))
            after = ps.cpu_times()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return float((after.user + after.system) - (before.user + before.system)) / requests


# --- ingest with its producer stubbed ---------------------------------------------------


def stubbed_ingest() -> Any:
    """uvicorn factory (``bench.ingest_floors:stubbed_ingest``): ingest whose producer
    acknowledges every send at once, so no broker is involved."""
    from services.ingest.producer import KafkaGate

    async def keep_alive(self: KafkaGate, check_every: float = 0.5) -> None:
        self._producer = AckedAtOnce()  # type: ignore[assignment]
        self._connected.set()
        await asyncio.Event().wait()

    KafkaGate.keep_alive = keep_alive  # type: ignore[method-assign]
    return create_app()


def stub_floor(requests: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bw-bench-floor-") as tmp:
        nobody = f"127.0.0.1:{free_port()}"
        proc, url, token = start_ingest(
            nobody, "floor.", Path(tmp), app="bench.ingest_floors:stubbed_ingest"
        )
        try:
            bodies = [orjson.dumps(b[0]) for b in make_batches(requests + 200, 1)]
            asyncio.run(bench_post_all(url, token, bodies[:200], CLIENTS))
            ps = psutil.Process(proc.pid)
            before = ps.cpu_times()
            _, _, latencies, failed = asyncio.run(bench_post_all(url, token, bodies[200:], CLIENTS))
            after = ps.cpu_times()
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    if failed:
        raise SystemExit(f"{failed} requests to the stubbed ingest were not 202")
    return float((after.user + after.system) - (before.user + before.system)) / len(latencies)


# --- kafka -----------------------------------------------------------------------------


async def produce(settings: CommonSettings, topic: str, records: int) -> None:
    producer = make_producer(settings, request_timeout_ms=30_000, linger_ms=0)
    await producer.start()
    left = [records]

    async def sender(key: bytes) -> None:
        while left[0] > 0:
            left[0] -= 1
            future = await producer.send(
                topic,
                value=event_body(),
                key=key,
                timestamp_ms=int(time.time() * 1000),
                headers=[received_header(time.time())],
            )
            await asyncio.wait([future])

    try:
        keys = [b"LV-KRA", b"LT-MED", b"PL-KUZ", b"PL-BIA"]
        await asyncio.gather(*(sender(keys[i % len(keys)]) for i in range(CLIENTS)))
    finally:
        await producer.stop()


def kafka_floor(requests: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bw-bench-floor-") as tmp:
        broker = EmbeddedKafka(Path(tmp) / "kafka", heap="512m")
        broker.start()
        try:
            broker.wait_ready(timeout=90)
            settings = CommonSettings(kafka_bootstrap=broker.bootstrap, topic_prefix="floor.")
            asyncio.run(ensure_topics(settings, 6))
            asyncio.run(produce(settings, "floor.field-events", 300))
            started = time.process_time()
            asyncio.run(produce(settings, "floor.field-events", requests))
            return (time.process_time() - started) / requests
        finally:
            broker.stop()


# --- door ------------------------------------------------------------------------------


class AckedAtOnce:
    """A producer stub: every send is acknowledged at once."""

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@contextmanager
def _tokens() -> Iterator[tuple[Path, str]]:
    with tempfile.TemporaryDirectory(prefix="bw-bench-floor-") as tmp:
        path = Path(tmp) / "tokens.json"
        yield path, create_token(path, ["ingest:field"], "floor")


async def door_floor(requests: int, fast_path: bool) -> float:
    # The app's own producers retry a broker that is not there: not the figure's business.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with _tokens() as (tokens_file, token):
        settings = IngestSettings(
            tokens_file=tokens_file,
            rate_limit_per_second=0,
            kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nobody: the stub stands in
            log_level="ERROR",
        )
        app = create_app(settings, fast_path=fast_path)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(
            app(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put
            )
        )
        await outbox.get()
        app.state.ingest.gate._producer = AckedAtOnce()
        statuses: set[int] = set()

        async def one(body: bytes) -> None:
            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "server": ("127.0.0.1", 8081),
                "client": ("127.0.0.1", 50000),
                "scheme": "http",
                "root_path": "",
                "method": "POST",
                "path": "/v1/field-events",
                "raw_path": b"/v1/field-events",
                "query_string": b"",
                "state": {},
                "headers": [
                    (b"host", b"127.0.0.1:8081"),
                    (b"accept", b"*/*"),
                    (b"accept-encoding", b"gzip, deflate"),
                    (b"connection", b"keep-alive"),
                    (b"user-agent", b"python-httpx/0.28.1"),
                    (b"authorization", f"Bearer {token}".encode()),
                    (b"content-type", b"application/x-ndjson"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive() -> dict[str, Any]:
                return messages.pop() if messages else {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.add(message["status"])

            await app(scope, receive, send)

        for body in [event_body() for _ in range(1000)]:
            await one(body)
        bodies = [event_body() for _ in range(requests)]
        started = time.process_time()
        for body in bodies:
            await one(body)
        took = time.process_time() - started
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await lifespan
        if statuses != {202}:
            raise SystemExit(f"the door answered {sorted(statuses)}, not only 202")
        return took / requests


def main() -> None:
    global CLIENTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument(
        "--clients",
        type=int,
        default=CLIENTS,
        help="HTTP clients and Kafka senders; 1: every request alone, as at a low rate",
    )
    args = parser.parse_args()
    CLIENTS = args.clients
    print(f"{args.requests} single-event requests; {CLIENTS} clients/senders", flush=True)
    figures = [
        ("http:  uvicorn + a null ASGI app", lambda: http_floor(args.requests)),
        ("stub:  ingest over HTTP, producer stubbed", lambda: stub_floor(args.requests)),
        (
            "door:  ingest's code, with the door",
            lambda: asyncio.run(door_floor(args.requests, True)),
        ),
        (
            "door:  ingest's code, FastAPI route only",
            lambda: asyncio.run(door_floor(args.requests, False)),
        ),
        ("kafka: bare aiokafka producer, ack per record", lambda: kafka_floor(args.requests)),
    ]
    for name, measure in figures:
        print(f"{name + ':':48s} {measure() * 1000:.3f} ms CPU per request", flush=True)


if __name__ == "__main__":
    main()
