"""Benchmark: live-feed delivery latency to 1,000 WebSocket clients of ONE API process.

    python -m bench.feeds [--clients 1000] [--procs 1] [--rate 200] [--sections 200]
                          [--warmup 10] [--seconds 40] [--no-compression] [--direct]
                          [--flush SECONDS] [--profile FILE]

Starts, in a temporary directory, everything as it runs in production: a real
embedded Kafka broker (topics from ``ensure_topics``), one aggregator worker
(``python -m services.aggregator``), one ingest and one API process (``uvicorn
services.<name>.app:create_app --factory`` on 127.0.0.1, the flags of
``borderwatch up``, authentication off). Then:

- ``--clients`` WebSocket clients subscribe to ``/ws/feed``, spread over
  ``--procs`` client processes (uvloop, each connection an asyncio protocol
  driving websockets' sans-I/O client: half the CPU per frame of the asyncio
  client). They share the machine's cores with everything else; their CPU is
  printed beside the API's, with a warning if one of them is near a full core
  (its receipt times would then include its own queueing). Clients offer
  permessage-deflate as browsers do (``--no-compression`` to turn it off). A
  client closed with 4008 (too slow) reconnects with its cursor, as the
  protocol says, and is counted.
- A poster sends single field events to ingest, each section waiting for its
  previous 202, round robin over ``--sections`` sections at ``--rate`` posts/s.
  Every event has ``count`` 1, so the k-th accepted post of a section is the
  first one whose state has a 24 h total >= k. The catalogue is the shipped one
  plus synthetic sections, enough that one aggregator batch rarely holds two
  posts for a section: each post becomes its own state update. The update rate
  actually received is measured at the clients and printed.
- Latency of a post = (a client receives a ``section_state`` or snapshot whose
  24 h total for that section reaches the post's mark) - (the post's 202 came
  back), for every client and every post accepted in the measured window
  (after ``--warmup``). All processes read CLOCK_MONOTONIC, which the machine
  shares. A bare Kafka reader beside the API notes when each state became
  readable, which splits the latency into the pipeline (ingest, aggregator)
  and the API's leg.
- psutil samples the CPU and memory of the API process, and of the others for
  context, over the measured window; CPU used by processes that are not the
  benchmark's (other test runs on the machine) is printed too.

``--direct`` leaves out ingest and the aggregator: section states built by the
aggregator's engine are produced straight to the section-state topic, so the
API has the machine to itself. ``--profile FILE`` runs the API under cProfile
(slower: read the profile, not the figures) and prints its top functions.

Prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import multiprocessing as mp
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped]
import uvloop
import yaml

from services.aggregator.state import BatchOutcome, Engine, SectionAggregate
from services.api.settings import UVICORN_FLAGS
from services.common.catalogue import Catalogue
from services.common.kafka import ensure_topics, make_consumer, make_producer
from services.common.settings import DEFAULT_CONFIG_DIR, CommonSettings
from services.common.topics import Topics
from services.runtime.broker import EmbeddedKafka, free_port
from services.runtime.supervisor import NotReady, wait_http_ready

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 6
TARGET_P99_MS = 250.0
# Latency histogram resolution: 0.1 ms bins.
BIN = 0.0001


# --- the deployment --------------------------------------------------------------------


def write_catalogue(dest: Path, n: int) -> list[str]:
    """The shipped catalogue, repeated with synthetic ids up to ``n`` sections."""
    data = yaml.safe_load((DEFAULT_CONFIG_DIR / "sections.yaml").read_text(encoding="utf-8"))
    shipped = data["sections"]
    sections = list(shipped[:n])
    i = 0
    while len(sections) < n:
        base = dict(shipped[i % len(shipped)])
        i += 1
        base["id"] = f"{base['country']}-B{i:03d}"
        base["name"] = f"Bench {i}"
        sections.append(base)
    dest.write_text(yaml.safe_dump({"sections": sections}, allow_unicode=True), "utf-8")
    return [s["id"] for s in sections]


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_http_ready(
                self.url + "/readyz",
                self.process,
                name=self.name,
                log_path=self.log,
                timeout=timeout,
            )
        except NotReady as exc:
            raise SystemExit(str(exc)) from exc

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def start_service(
    name: str, argv: list[str], env: dict[str, str], workdir: Path, port: int
) -> Service:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Service(name, proc, log, f"http://127.0.0.1:{port}")


# Runs the API under cProfile and writes the stats however it stops: uvicorn re-raises
# SIGTERM after its graceful shutdown, which would end ``python -m cProfile`` unwritten.
PROFILED_UVICORN = """
import cProfile, signal, sys
import uvicorn
out, app, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
prof = cProfile.Profile()
def stop(signum, frame):
    prof.disable()
    prof.dump_stats(out)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
prof.enable()
uvicorn.run(app, factory=True, host="127.0.0.1", port=port, access_log=False, log_level="warning")
stop(None, None)
"""


def uvicorn(app: str, port: int, profile: Path | None = None) -> list[str]:
    """The command ``borderwatch up`` runs for ``app`` (optionally under cProfile)."""
    target = f"services.{app}.app:create_app"
    if profile is not None:
        return [sys.executable, "-c", PROFILED_UVICORN, str(profile), target, str(port)]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *(UVICORN_FLAGS if app == "api" else ()),
    ]


# --- client processes --------------------------------------------------------------------


@dataclass
class ClientStats:
    per_second: Counter[int] = field(default_factory=Counter)
    too_slow: int = 0
    errors: int = 0
    connected: int = 0


def read_frame(raw: bytes) -> tuple[str, list[tuple[str, int]], int]:
    """(the last cursor, (section, 24 h total) of every section in it, how many
    section_state messages) of one frame, parsed whole, as a real client would."""
    states: list[tuple[str, int]] = []
    cursor = ""
    updates = 0
    # Every frame is a batch of messages, each with its own cursor.
    for message in orjson.loads(raw)["messages"]:
        cursor = message["cursor"]
        kind = message["type"]
        if kind == "section_state":
            payloads = [message["payload"]]
            updates += 1
        elif kind in ("snapshot", "resync"):
            payloads = message["payload"].get("sections", [])
        else:
            continue
        states += [(p["section_id"], sum(p["counts_24h"].values())) for p in payloads]
    return cursor, states, updates


STATE_START = b'{"type":"section_state","payload":{'


def scan_frame(raw: bytes) -> tuple[str, list[tuple[str, int]], int]:
    """``read_frame`` at a fraction of the cost: finds the few fields it needs in the
    frame's bytes (the API writes compact JSON) instead of building every message's
    objects, so the load generator, which shares the cores with the API, can keep up
    with far more messages. Frames with a snapshot or resync are parsed whole."""
    head = raw[:60]
    if b'"snapshot"' in head or b'"resync"' in head:
        return read_frame(raw)
    states: list[tuple[str, int]] = []
    at = raw.find(STATE_START)
    while at >= 0:
        sid_at = raw.index(b'"section_id":"', at) + 14
        sid = raw[sid_at : raw.index(b'"', sid_at)].decode()
        counts_at = raw.index(b'"counts_24h":', sid_at) + 13
        counts = orjson.loads(raw[counts_at : raw.index(b"}", counts_at) + 1])
        states.append((sid, sum(counts.values())))
        at = raw.find(STATE_START, counts_at)
    cursor_at = raw.rindex(b'"cursor":"') + 10
    return raw[cursor_at : raw.index(b'"', cursor_at)].decode(), states, len(states)


class FeedConnection(asyncio.Protocol):
    """One feed client: websockets' sans-I/O protocol (handshake, framing, pings,
    close) driven straight from the event loop's callbacks.

    websockets' asyncio client costs ~40 us of CPU per received frame here (a task,
    futures and a queue per message); this costs ~19 (bench measurement on uvloop,
    one frame per wake-up as on the feed), and the load generator shares the
    cores with everything it measures."""

    def __init__(self, url: str, compression: bool, on_frame: Any) -> None:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        from websockets.uri import parse_uri

        self.ws = ClientProtocol(
            parse_uri(url),
            extensions=[ClientPerMessageDeflateFactory()] if compression else None,
            max_size=None,
        )
        self.on_frame = on_frame
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._parts: list[bytes] = []
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.ws.send_request(self.ws.connect())
        self._write()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        now = time.monotonic()
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    if not event.fin:
                        self._parts.append(event.data)
                    elif self._parts:
                        self._parts.append(event.data)
                        self.on_frame(b"".join(self._parts), now)
                        self._parts.clear()
                    else:
                        self.on_frame(bytes(event.data), now)
            elif isinstance(event, Response) and not self.opened.done():
                if ws.handshake_exc is None:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(ws.handshake_exc)
        self._write()
        if ws.close_expected() and self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._write()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(self.ws.close_code)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _write(self) -> None:
        out = self.ws.data_to_send()
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(b for b in out if b)


Parsed = tuple[str, list[tuple[str, int]], int]


class FrameBook:
    """The distinct frames the clients of one process received, each parsed once.

    Clients that share a filter and a place in the feed receive the same frame,
    byte for byte; one is known by its length and its tail, which holds the
    cursor of its last message (hashing whole frames cost more than scanning
    them). ``full_parse`` parses every frame whole, as a real client would."""

    def __init__(self, full_parse: bool = False) -> None:
        self.parsed: list[Parsed] = []
        self._known: dict[tuple[int, bytes], int] = {}
        self._full = full_parse

    def note(self, raw: bytes) -> int:
        if self._full:
            self.parsed.append(read_frame(raw))
            return len(self.parsed) - 1
        key = (len(raw), raw[-200:])
        at = self._known.get(key)
        if at is None:
            if len(self._known) >= 256:
                self._known.clear()
            at = self._known[key] = len(self.parsed)
            self.parsed.append(scan_frame(raw))
        return at


class Received:
    """What one client got: receipt times and which frame, in flat arrays (no
    object per frame for the garbage collector to walk while the clients run)."""

    __slots__ = ("frames", "times")

    def __init__(self) -> None:
        self.times = array("d")
        self.frames = array("l")


def record_marks(
    received: Received, book: FrameBook, index: dict[str, int], per_second: Counter[int]
) -> list[array[float]]:
    """A client's receipt time of each section's k-th mark, from the frames it got
    (done after the run: while it runs a client only notes (time, frame))."""
    marks = [array("d") for _ in index]
    for now, at in zip(received.times, received.frames, strict=True):
        _, states, updates = book.parsed[at]
        per_second[int(now)] += updates
        for sid, reached in states:
            got = marks[index[sid]]
            while len(got) < reached:
                got.append(now)
    return marks


async def _client(
    url: str,
    received: Received,
    stats: ClientStats,
    stop: asyncio.Event,
    compression: bool,
    gate: asyncio.Semaphore,
    ready: asyncio.Event,
    total: int,
    book: FrameBook,
) -> None:
    loop = asyncio.get_running_loop()
    address = urllib.parse.urlsplit(url)
    cursor = ""
    first = True

    def on_frame(raw: bytes, now: float) -> None:
        nonlocal cursor
        at = book.note(raw)
        cursor = book.parsed[at][0]
        received.times.append(now)
        received.frames.append(at)

    while not stop.is_set():
        target = url + (f"?cursor={cursor}" if cursor else "")
        conn: FeedConnection | None = None
        try:
            async with gate:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        functools.partial(FeedConnection, target, compression, on_frame),
                        address.hostname,
                        address.port,
                    ),
                    timeout=120,
                )
                await asyncio.wait_for(conn.opened, timeout=120)
            if first:
                first = False
                stats.connected += 1
                if stats.connected == total:
                    ready.set()
            code = await conn.closed
        except asyncio.CancelledError:
            if conn is not None:
                conn.close()
            raise
        except Exception:
            # Refused handshakes, resets: count them and reconnect, as a client would.
            if conn is not None:
                conn.close()
            if stop.is_set():
                return
            stats.errors += 1
            await asyncio.sleep(0.5)
            continue
        if stop.is_set():
            return
        if code == 4008:
            stats.too_slow += 1
        else:
            stats.errors += 1
            await asyncio.sleep(0.5)


def _latencies(
    marks: list[list[array[float]]],
    accepted: dict[int, list[float]],
    since: dict[int, list[float]],
    t0: float,
    t1: float,
) -> tuple[Counter[int], int, int]:
    """(histogram of receipt - ``since`` in BIN-wide bins, delivered, never delivered), over
    every client and every post accepted in [t0, t1)."""
    hist: Counter[int] = Counter()
    delivered = missing = 0
    for client_marks in marks:
        for section, times in accepted.items():
            got = client_marks[section]
            ref = since[section]
            for k, t_accepted in enumerate(times):
                if not t0 <= t_accepted < t1:
                    continue
                if k < len(got) and k < len(ref):
                    hist[round((got[k] - ref[k]) / BIN)] += 1
                    delivered += 1
                else:
                    missing += 1
    return hist, delivered, missing


def client_report(
    received: list[Received],
    book: FrameBook,
    index: dict[str, int],
    stats: ClientStats,
    accepted: dict[int, list[float]],
    tapped: dict[int, list[float]],
    t0: float,
    t1: float,
) -> dict[str, Any]:
    """What a group of clients reports: latency histograms over [t0, t1) and counters."""
    marks = [record_marks(r, book, index, stats.per_second) for r in received]
    received.clear()
    hist, delivered, missing = _latencies(marks, accepted, accepted, t0, t1)
    api_hist, _, _ = _latencies(marks, accepted, tapped, t0, t1)
    # Per client: when the newest post it had seen by the end was accepted.
    freshest = [
        max(
            (accepted[s][len(got) - 1] for s, got in enumerate(m) if 0 < len(got)),
            default=0.0,
        )
        for m in marks
    ]
    # Whole seconds inside the window only.
    window = sum(c for s, c in stats.per_second.items() if math.ceil(t0) <= s < int(t1))
    return {
        "hist": hist,
        "api_hist": api_hist,
        "freshest": freshest,
        "delivered": delivered,
        "missing": missing,
        "updates_in_window": window,
        "too_slow": stats.too_slow,
        "errors": stats.errors,
        "clients": len(marks),
    }


def client_process(
    conn: Connection, url: str, n: int, sections: list[str], compression: bool, full_parse: bool
) -> None:
    """Runs ``n`` clients until told to stop, then reports their latencies."""

    async def main() -> None:
        index = index_of(sections)
        received = [Received() for _ in range(n)]
        stats = ClientStats()
        stop = asyncio.Event()
        ready = asyncio.Event()
        gate = asyncio.Semaphore(25)
        started = time.monotonic()
        book = FrameBook(full_parse)
        tasks = [
            asyncio.create_task(
                _client(url, received[i], stats, stop, compression, gate, ready, n, book)
            )
            for i in range(n)
        ]
        await asyncio.wait_for(ready.wait(), timeout=180)
        conn.send(("connected", time.monotonic() - started))
        command, accepted, tapped, t0, t1 = await asyncio.to_thread(conn.recv)
        assert command == "report"
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send(client_report(received, book, index, stats, accepted, tapped, t0, t1))

    uvloop.run(main())


# --- the poster ----------------------------------------------------------------------------


def _event(section: str) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "kind": "detection",
            "section_id": section,
            "observed_at": datetime.now(UTC).isoformat(),
            "count": 1,
            "source": {"type": "thermal_camera", "id": "BENCH-TC-1"},
            "confidence": "high",
        }
    )


async def tap(
    settings: CommonSettings,
    topic: str,
    index: dict[str, int],
    seen: list[array[float]],
    stop: asyncio.Event,
) -> None:
    """Read the section-state topic as the API does (no group, every partition) and
    note when each mark first reached a reader: splits the latency into the pipeline
    up to Kafka and the API's leg."""
    consumer = make_consumer(settings, topic)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    state = orjson.loads(record.value)
                    got = seen[index[state["section_id"]]]
                    reached = sum(state["counts_24h"].values())
                    while len(got) < reached:
                        got.append(now)
    finally:
        await consumer.stop()


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client: one connection, one request at a time.

    The load generator shares 2 cores with everything it measures, so it should
    cost little; and one shared ``httpx.AsyncClient`` pool serialises 60
    concurrent requests badly (measured here: 60 concurrent posts took up to
    ~1 s on one shared pool, ~0.2 s on 60 separate connections)."""

    def __init__(
        self,
        host: str,
        port: int,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head = f"Host: {host}\r\nContent-Type: {content_type}\r\n{extra}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        # The server closes a connection idle for its keep-alive timeout (uvicorn: 5 s;
        # a section posting every 10 s at --rate 20 over 200 sections). Like any
        # keep-alive client, open a new one then. Seen closed only once its FIN has
        # been read, so a close racing the request still fails the post.
        if self._reader is not None and self._reader.at_eof():
            await self.close()
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(
            b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self._head, len(body), body)
        )
        status = int((await self._reader.readline()).split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def post_events(
    port: int,
    sections: list[str],
    rate: float,
    seconds: float,
    drain: float,
    sample: Any,
    settings: CommonSettings,
) -> tuple[dict[int, list[float]], dict[int, list[float]], list[float], int]:
    """Post at ``rate``/s for ``seconds``: (accept times per section index, first
    reads of each mark from Kafka, request latencies, failed posts). Each section
    waits for its previous 202."""
    accepted: dict[int, list[float]] = {i: [] for i in range(len(sections))}
    seen = [array("d") for _ in sections]
    stop = asyncio.Event()
    tapper = asyncio.create_task(
        tap(settings, Topics(settings.topic_prefix).section_state, index_of(sections), seen, stop)
    )
    latencies: list[float] = []
    failed = 0
    period = len(sections) / rate
    start = time.monotonic() + 0.5
    end = start + seconds

    async def poster(i: int) -> None:
        nonlocal failed
        http = RawHttp("127.0.0.1", port)
        slot = start + i * period / len(sections)
        try:
            while slot < end:
                delay = slot - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.monotonic()
                try:
                    status, body = await asyncio.wait_for(
                        http.post("/v1/field-events", _event(sections[i])), timeout=10
                    )
                    ok = status == 202 and len(orjson.loads(body)["accepted"]) == 1
                except (OSError, TimeoutError, ValueError, IndexError):
                    ok = False
                done = time.monotonic()
                if not ok:
                    # The section's marks would shift: stop posting to it.
                    failed += 1
                    return
                accepted[i].append(done)
                latencies.append(done - sent)
                slot += period
        finally:
            await http.close()

    sampler = asyncio.create_task(sample(start, end))
    await asyncio.gather(*(poster(i) for i in range(len(sections))))
    await sampler
    await asyncio.sleep(drain)
    stop.set()
    await tapper
    return accepted, {i: list(a) for i, a in enumerate(seen)}, latencies, failed


async def produce_states(
    settings: CommonSettings,
    catalogue_file: Path,
    sections: list[str],
    rate: float,
    seconds: float,
    drain: float,
    sample: Any,
) -> tuple[dict[int, list[float]], dict[int, list[float]], list[float], int]:
    """``--direct``: no ingest, no aggregator. Section states built by the aggregator's
    own engine (plain Python), produced straight to the section-state topic at ``rate``
    (acks=all, one at a time per section); "accepted" = the broker's ack."""
    engine = Engine(Catalogue.load(catalogue_file), [])
    aggs = [SectionAggregate(section_id=sid) for sid in sections]
    topic = Topics(settings.topic_prefix).section_state
    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    accepted: dict[int, list[float]] = {i: [] for i in range(len(sections))}
    seen = [array("d") for _ in sections]
    stop = asyncio.Event()
    tapper = asyncio.create_task(tap(settings, topic, index_of(sections), seen, stop))
    latencies: list[float] = []
    period = len(sections) / rate
    start = time.monotonic() + 0.5
    end = start + seconds

    async def section_producer(i: int) -> None:
        slot = start + i * period / len(sections)
        k = 0
        while slot < end:
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.monotonic()
            engine.apply_record(aggs[i], 0, k, [orjson.loads(_event(sections[i]))], BatchOutcome())
            pub = engine.refresh(aggs[i], time.time())
            assert pub.state is not None
            await producer.send_and_wait(
                topic,
                orjson.dumps(pub.state.model_dump(mode="json")),
                key=sections[i].encode(),
            )
            done = time.monotonic()
            accepted[i].append(done)
            latencies.append(done - sent)
            k += 1
            slot += period

    sampler = asyncio.create_task(sample(start, end))
    try:
        await asyncio.gather(*(section_producer(i) for i in range(len(sections))))
        await sampler
        await asyncio.sleep(drain)
    finally:
        stop.set()
        await tapper
        await producer.stop()
    return accepted, {i: list(a) for i, a in enumerate(seen)}, latencies, 0


def index_of(sections: list[str]) -> dict[str, int]:
    return {sid: i for i, sid in enumerate(sections)}


# --- figures ---------------------------------------------------------------------------------


def percentile_of(hist: Counter[int], q: float, undelivered: int = 0) -> float:
    """The q-quantile of a histogram of BIN-wide bins, in milliseconds; ``undelivered``
    marks count as infinitely late (inf when the quantile falls among them)."""
    total = sum(hist.values()) + undelivered
    if total == 0:
        return float("nan")
    rank = q * (total - 1)
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen > rank:
            return b * BIN * 1000
    return math.inf


def in_window_marks(accepted: dict[int, list[float]], t0: float, t1: float) -> int:
    return sum(1 for times in accepted.values() for t in times if t0 <= t < t1)


def ms(value: float) -> str:
    return "undelivered" if math.isinf(value) else f"{value:.0f} ms"


def scrape(url: str) -> str | None:
    """The text of ``url``/metrics, or None if it cannot be read."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=15) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def metric(text: str | None, name: str) -> float:
    """The sum of the samples whose line starts with ``name`` (NaN without a scrape)."""
    if text is None:
        return float("nan")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def print_profile(path: Path, limit: int = 30) -> None:
    stats = pstats.Stats(str(path))
    print(f"\n--- API cProfile ({path}), top {limit} by own time ---")
    stats.sort_stats("tottime").print_stats(limit)
    print(f"--- API cProfile, top {limit} by cumulative time ---")
    stats.sort_stats("cumulative").print_stats(limit)


# --- main ------------------------------------------------------------------------------------


def start_pipeline(
    env: dict[str, str], workdir: Path, prefix: str, agg_port: int, ingest_port: int
) -> tuple[Service, Service]:
    aggregator = start_service(
        "aggregator",
        [sys.executable, "-m", "services.aggregator"],
        {
            **env,
            "BW_APP_ID": f"bench-agg-{prefix}",
            "BW_WEB_PORT": str(agg_port),
            "BW_DATA_DIR": str(workdir / "aggregator"),
        },
        workdir,
        agg_port,
    )
    ingest = start_service(
        "ingest",
        uvicorn("ingest", ingest_port),
        {**env, "BW_RATE_LIMIT_PER_SECOND": "0"},
        workdir,
        ingest_port,
    )
    return aggregator, ingest


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bw-bench-feeds-"))
    broker = EmbeddedKafka(workdir / "kafka", heap="768m")
    services: list[Service] = []
    clients: list[Any] = []
    t_begin = time.monotonic()
    try:
        broker.start()
        broker.wait_ready(timeout=90)
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        settings = CommonSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix)
        asyncio.run(ensure_topics(settings, PARTITIONS))
        sections = write_catalogue(workdir / "sections.yaml", args.sections)

        env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
        env.update(
            {
                "BW_KAFKA_BOOTSTRAP": broker.bootstrap,
                "BW_TOPIC_PREFIX": prefix,
                "BW_FIELD_PARTITIONS": str(PARTITIONS),
                "BW_SECTIONS_FILE": str(workdir / "sections.yaml"),
                "BW_DATA_DIR": str(workdir / "data"),
                "BW_LOG_LEVEL": "WARNING",
                "BW_AUTH_ENABLED": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        agg_port, ingest_port, api_port = free_port(), free_port(), free_port()
        api_env = dict(env)
        if args.flush is not None:
            api_env["BW_FEED_FLUSH_SECONDS"] = str(args.flush)
        api = start_service(
            "api", uvicorn("api", api_port, args.profile), api_env, workdir, api_port
        )
        services = [api]
        aggregator = ingest = None
        if not args.direct:
            pipeline_env = dict(env)
            pipeline_env.update(item.split("=", 1) for item in args.env)
            aggregator, ingest = start_pipeline(
                pipeline_env, workdir, prefix, agg_port, ingest_port
            )
            services += [aggregator, ingest]
        for service in services:
            service.wait_ready(90)
        print(
            f"broker, {'API' if args.direct else 'aggregator, ingest and API'} ready in "
            f"{time.monotonic() - t_begin:.1f}s "
            f"({len(sections)} sections, {PARTITIONS} partitions)",
            flush=True,
        )

        # Clients
        ctx = mp.get_context("spawn")
        ws_url = f"ws://127.0.0.1:{api_port}/ws/feed"
        per_proc = [
            args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)
        ]
        pipes: list[Any] = []
        for n in per_proc:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_process,
                args=(child, ws_url, n, sections, not args.no_compression, args.full_parse),
                daemon=True,
            )
            proc.start()
            clients.append(proc)
            pipes.append(parent)
        connect_times = []
        for parent, proc in zip(pipes, clients, strict=True):
            if not parent.poll(200):
                raise SystemExit(f"client process {proc.pid} did not connect its clients")
            _, seconds = parent.recv()
            connect_times.append(seconds)
        print(
            f"{args.clients} WebSocket clients connected in {max(connect_times):.1f}s "
            f"over {args.procs} client processes",
            flush=True,
        )

        # Load
        watched = {
            "api": psutil.Process(api.process.pid),
            "ingest": psutil.Process(ingest.process.pid) if ingest else None,
            "aggregator": psutil.Process(aggregator.process.pid) if aggregator else None,
            "kafka": psutil.Process(broker.process.pid) if broker.process else None,
        }
        client_ps = [psutil.Process(p.pid) for p in clients]
        poster_ps = psutil.Process()
        cpu: dict[str, float] = {}
        rss: list[float] = []
        busiest_client: list[float] = []
        window: dict[str, float] = {}

        async def sample(start: float, end: float) -> None:
            t0 = start + args.warmup
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            for p in watched.values():
                if p is not None:
                    p.cpu_percent(None)
            for p in [*client_ps, poster_ps]:
                p.cpu_percent(None)
            psutil.cpu_percent(None)
            window["t0"] = time.monotonic()
            while time.monotonic() < end:
                rss.append(watched["api"].memory_info().rss)
                await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
            window["t1"] = time.monotonic()
            for name, p in watched.items():
                if p is not None:
                    cpu[name] = p.cpu_percent(None)
            per_process = [p.cpu_percent(None) for p in client_ps]
            cpu["clients"] = sum(per_process)
            busiest_client.append(max(per_process))
            cpu["poster"] = poster_ps.cpu_percent(None)
            cpu["machine"] = psutil.cpu_percent(None) * psutil.cpu_count()
            # Whatever else runs on the machine (other test runs) skews every figure.
            ours = sum(v for k, v in cpu.items() if k != "machine")
            cpu["not ours"] = max(0.0, cpu["machine"] - ours)
            rss.append(watched["api"].memory_info().rss)

        print(
            f"posting {args.rate:g} updates/s over {len(sections)} sections for "
            f"{args.warmup + args.seconds:g}s ({args.warmup:g}s warm-up)...",
            flush=True,
        )
        duration = args.warmup + args.seconds
        if args.direct:
            load = produce_states(
                settings,
                workdir / "sections.yaml",
                sections,
                args.rate,
                duration,
                args.drain,
                sample,
            )
        else:
            load = post_events(
                ingest_port, sections, args.rate, duration, args.drain, sample, settings
            )
        accepted, tapped, post_latencies, failed = uvloop.run(load)
        t0, t1 = window["t0"], window["t1"]

        api_metrics = scrape(api.url)
        dropped = metric(api_metrics, "bw_api_feed_clients_dropped_total")
        queued = metric(api_metrics, 'bw_api_feed_messages_total{type="section_state"}')
        frames = metric(api_metrics, "bw_api_feed_frames_total")
        # Garbage-collector pauses of the API over the whole run (bw_gc_pause_seconds).
        gc_count = metric(api_metrics, "bw_gc_pause_seconds_count")
        gc_sum = metric(api_metrics, "bw_gc_pause_seconds_sum")
        gc_short = sum(
            metric(api_metrics, f'bw_gc_pause_seconds_bucket{{generation="{g}",le="0.05"}}')
            for g in "012"
        )
        results = []
        t_end = time.monotonic()
        for parent in pipes:
            parent.send(("report", accepted, tapped, t0, t1))
        for parent in pipes:
            results.append(parent.recv())
        for proc in clients:
            proc.join(timeout=30)
    finally:
        for proc in clients:
            if proc.is_alive():
                proc.kill()
        for service in reversed(services):
            service.stop(timeout=60 if args.profile else 20)
        broker.stop()

    # Figures
    hist: Counter[int] = Counter()
    for r in results:
        hist.update(r["hist"])
    delivered = sum(r["delivered"] for r in results)
    missing = sum(r["missing"] for r in results)
    n_clients = sum(r["clients"] for r in results)
    seconds = t1 - t0
    in_window = in_window_marks(accepted, t0, t1)
    received = sum(r["updates_in_window"] for r in results)
    whole_seconds = max(1, int(t1) - math.ceil(t0))
    updates = received / n_clients / whole_seconds
    api_cpu_seconds = cpu.get("api", float("nan")) / 100 * whole_seconds
    api_hist: Counter[int] = Counter()
    for r in results:
        api_hist.update(r["api_hist"])
    # A post that never reached a client by the end counts as infinitely late.
    p = {q: percentile_of(hist, q, missing) for q in (0.5, 0.95, 0.99)}
    p_api = {q: percentile_of(api_hist, q, missing) for q in (0.5, 0.95, 0.99)}
    pipeline: Counter[int] = Counter(
        round((tapped[s][k] - t) / BIN)
        for s, times in accepted.items()
        for k, t in enumerate(times)
        if t0 <= t < t1 and k < len(tapped[s])
    )
    unread = in_window_marks(accepted, t0, t1) - sum(pipeline.values())
    p_pipe = {q: percentile_of(pipeline, q, unread) for q in (0.5, 0.95, 0.99)}
    post_sorted = sorted(post_latencies)
    accept = "the broker's ack of the state" if args.direct else "ingest's 202"

    print()
    print(f"feed benchmark: {n_clients} WebSocket clients on /ws/feed of ONE API process")
    print(
        f"  clients live in {len(results)} client processes (uvloop + websockets sans-I/O), "
        f"on the same {psutil.cpu_count()} cores; permessage-deflate "
        f"{'off' if args.no_compression else 'offered (as browsers do)'}, never taken by the API"
    )
    if args.direct:
        print("  --direct: no ingest, no aggregator; states produced straight to Kafka")
    if args.profile:
        print("  API RUN UNDER cProfile: slower than normal, read the profile, not the figures")
    print(
        f"  posted {in_window / seconds:.0f} updates/s in the {seconds:.0f}s window "
        f"(target {args.rate:g}/s; {accept}: p50 {1000 * post_sorted[len(post_sorted) // 2]:.1f} ms,"
        f" p99 {1000 * post_sorted[int(0.99 * (len(post_sorted) - 1))]:.1f} ms; {failed} failed)"
    )
    print(
        f"  section-state updates received: {updates:.0f}/s per client (measured at the "
        f"clients; {received / whole_seconds:,.0f} messages/s over all clients)"
    )
    print(
        f"  delivery latency ({accept} -> section_state at the client), {delivered:,} deliveries:"
    )
    print(f"    p50 {ms(p[0.5])}   p95 {ms(p[0.95])}   p99 {ms(p[0.99])}", end="")
    print(
        f"   (target p99 < {TARGET_P99_MS:.0f} ms: {'met' if p[0.99] < TARGET_P99_MS else 'MISSED'})"
    )
    print(
        f"    split: {accept} -> state read from Kafka by a bare reader beside the API: "
        f"p50 {ms(p_pipe[0.5])} / p95 {ms(p_pipe[0.95])} / p99 {ms(p_pipe[0.99])}"
    )
    print(
        f"           that reader -> the client (the API's leg: consume, fan out, send, "
        f"client): p50 {ms(p_api[0.5])} / p95 {ms(p_api[0.95])} / p99 {ms(p_api[0.99])}"
    )
    print(
        f"    never delivered by the end (+{args.drain:g}s drain): {missing:,} "
        f"({100 * missing / max(1, missing + delivered):.2f}%)"
    )
    freshest = sorted(f for r in results for f in r["freshest"])
    if freshest:
        print(
            f"    staleness at the end: the newest post a client had seen was accepted "
            f"{t_end - freshest[len(freshest) // 2]:.1f}s before the end (median client; "
            f"posting stopped {args.drain:g}s before the end)"
        )
    print(
        f"  clients closed with 4008 (too slow): {sum(r['too_slow'] for r in results)} "
        f"(API counter: {dropped:.0f}); other disconnects: {sum(r['errors'] for r in results)}"
    )
    print(f"  API section_state messages queued to clients: {queued:,.0f}")
    # Each frame is one batch of messages for one client: its cost (ASGI, framing,
    # a syscall) is what the API pays per client, so messages per frame says how
    # much batching the arrival pattern allowed.
    # (every client's filter passes every section_state message here)
    print(
        f"  API frames sent: {frames:,.0f} over the run, "
        f"{queued * n_clients / max(1.0, frames):.1f} section_state messages a frame"
    )
    print(
        f"  API garbage collections: {gc_count:.0f}, {1000 * gc_sum:.0f} ms in all, "
        f"{gc_count - gc_short:.0f} over 50 ms"
    )
    print(
        f"  API process: CPU {cpu.get('api', float('nan')):.0f}% (100% = one core), "
        f"RSS {rss[-1] / 2**20:.0f} MiB (peak {max(rss) / 2**20:.0f} MiB)"
    )
    if received:
        per_message = api_cpu_seconds / received
        print(
            f"  API CPU per delivered message: {1e6 * per_message:.0f} us, so "
            f"{args.rate:g} updates/s to {n_clients} clients would need "
            f"{per_message * args.rate * n_clients:.1f} cores for the API alone"
        )
    if args.rate > 0:
        # CPU per update is steadier than % on a shared machine (it still grows
        # when batches shrink, so compare runs of one sitting).
        per_update = {
            name: f"{10 * cpu[name] / args.rate:.2f} ms"
            for name in ("aggregator", "ingest")
            if name in cpu
        }
        if per_update:
            print(
                "  CPU per posted update: "
                + ", ".join(f"{k} {v}" for k, v in per_update.items())
                + (f" (settings: {' '.join(args.env)})" if args.env else "")
            )
    print(
        "  others, CPU %: "
        + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items() if k not in ("api", "machine"))
        + f"; whole machine {cpu.get('machine', float('nan')):.0f} of {100 * psutil.cpu_count()}"
    )
    if busiest_client and busiest_client[0] > 80:
        print(
            f"  WARNING: a client process used {busiest_client[0]:.0f}% of a core: receipt "
            "times include its own queueing (use more --procs)"
        )
    print(f"  total run time {time.monotonic() - t_begin:.0f}s")
    if args.profile:
        print_profile(args.profile)
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument(
        "--procs",
        type=int,
        default=1,
        help="client processes. One keeps up with 1,000 clients at ~35%% of a core; "
        "4 made the tail worse (p99 272-407 ms against 194-223 with 1, same commit): "
        "more processes contending for the 2 cores with what they measure",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events posted per second")
    parser.add_argument(
        "--sections",
        type=int,
        default=200,
        help="catalogue size: enough that one aggregator batch rarely holds two posts "
        "for a section, so each post becomes its own state update",
    )
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=40.0, help="measured window")
    parser.add_argument("--drain", type=float, default=3.0, help="wait after the last post")
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument(
        "--full-parse",
        action="store_true",
        help="clients parse every message whole (as a real client would) instead of "
        "picking out the fields they measure: far more client CPU",
    )
    parser.add_argument(
        "--flush",
        type=float,
        help="the API's BW_FEED_FLUSH_SECONDS (how often feed writers wake); default: the API's",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="no ingest/aggregator: produce section states straight to Kafka (the API alone)",
    )
    parser.add_argument("--profile", type=Path, help="run the API under cProfile, write here")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="BW_NAME=VALUE",
        help="a setting for the aggregator and ingest (repeatable), e.g. "
        "--env BW_BATCH_WITHIN=0.05 to compare settings in one sitting",
    )
    args = parser.parse_args()
    for item in args.env:
        name, sep, _ = item.partition("=")
        if not sep or not name.startswith("BW_"):
            parser.error(f"--env {item!r}: expected BW_NAME=VALUE")
    with contextlib.suppress(KeyboardInterrupt):
        run(args)


if __name__ == "__main__":
    main()
