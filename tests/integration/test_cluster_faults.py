"""Faults on a replicated cluster: three real Kafka 3.9 KRaft nodes, topics with three
copies and min.insync.replicas 2, one node SIGKILLed while events flow.

- The leader of field-events partitions dies in the middle of a 20,000-event stream
  of posts: every answer is 202 or 503, and every acknowledged event is counted
  exactly once.
- A node dies while the aggregator writes its changelog: the end state is exact
  (also for a worker that restores from that changelog), and restarting the node
  brings under-replicated partitions back to 0.
- The API's WebSocket feed stays live through the leader change: the longest gap
  between updates is measured.

Each test prints its figures (``pytest -s``) and restarts the node it killed, so the
next one starts on a healthy cluster. Run with ``pytest tests/integration/test_cluster_faults.py -s``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from schemas.models import KINDS
from services.common.catalogue import Catalogue
from services.common.kafka import partition_layout, under_replicated
from services.common.settings import DEFAULT_CONFIG_DIR
from services.runtime.broker import EmbeddedCluster, EmbeddedKafka, free_port, tail
from services.runtime.supervisor import wait_http_ready
from tests.integration.conftest import (
    REPO,
    Deployment,
    Worker,
    api_client,
    ingest_client,
    wait_until,
    worker_starter,
)

pytestmark = pytest.mark.integration

SECTIONS = list(Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml"))
PRODUCE_TIMEOUT = 5.0


# --- the cluster -----------------------------------------------------------------------


def _layout(dep: Deployment, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    return {p: v for (_, p), v in asyncio.run(partition_layout(dep.settings(), [topic])).items()}


def _busiest_leader(dep: Deployment, topic: str) -> int:
    """The node leading most partitions of ``topic``."""
    leaders = Counter(leader for leader, _, _ in _layout(dep, topic).values())
    return leaders.most_common(1)[0][0]


def _heal(cluster: EmbeddedCluster, node: EmbeddedKafka, dep: Deployment) -> float:
    """Restart ``node``; seconds until no partition of the cluster is under-replicated."""
    started = time.monotonic()
    node.start()
    node.wait_ready(timeout=90)
    wait_until(
        lambda: asyncio.run(under_replicated(dep.settings())) == 0,
        120,
        "under-replicated partitions back to 0",
    )
    return time.monotonic() - started


@pytest.fixture
def cluster(
    kafka_cluster: EmbeddedCluster, cluster_deployment: Deployment
) -> Iterator[EmbeddedCluster]:
    """The cluster, every node running and nothing under-replicated, before and after."""
    for node in kafka_cluster.nodes:
        if not node.running():
            _heal(kafka_cluster, node, cluster_deployment)
    yield kafka_cluster
    for node in kafka_cluster.nodes:
        if not node.running():
            _heal(kafka_cluster, node, cluster_deployment)


@pytest.fixture
def start_worker(cluster_deployment: Deployment, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    with worker_starter(cluster_deployment, tmp_path) as start:
        yield start


@pytest.fixture
def ingest(cluster_deployment: Deployment) -> Iterator[TestClient]:
    with ingest_client(
        cluster_deployment, rate_limit_per_second=0, produce_timeout=PRODUCE_TIMEOUT
    ) as client:
        yield client


@pytest.fixture
def api(cluster_deployment: Deployment) -> Iterator[TestClient]:
    with api_client(cluster_deployment) as client:
        yield client


# --- events ----------------------------------------------------------------------------


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [
        {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "kind": rng.choice(KINDS),
            "section_id": rng.choice(SECTIONS),
            "observed_at": (now - timedelta(seconds=rng.uniform(0, 1800))).isoformat(),
            "count": rng.randint(1, 3),
            "source": {"type": "thermal_camera", "id": "TC-1"},
            "confidence": "high",
        }
        for _ in range(n)
    ]


def _expected(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out = {sid: dict.fromkeys(KINDS, 0) for sid in SECTIONS}
    for e in events:
        out[e["section_id"]][e["kind"]] += e["count"]
    return out


def _counts(get: Callable[[str], Any]) -> dict[str, dict[str, int]]:
    return {s["section_id"]: s["counts_24h"] for s in get("/api/v1/sections")}


def _wait_exact(
    get: Callable[[str], Any],
    expected: dict[str, dict[str, int]],
    what: str,
    workers: tuple[Worker, ...] = (),
    api_metrics: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + 120
    while True:
        got = _counts(get)
        if got == expected:
            return
        if time.monotonic() > deadline:
            diff = {s: (got.get(s), want) for s, want in expected.items() if got.get(s) != want}
            raise AssertionError(
                f"{what}: counts differ (got, want): {diff}"
                + _where_it_stopped(workers, api_metrics)
            )
        time.sleep(0.3)


# What a failed wait shows besides the counts: did the worker count, publish, keep a
# queue, and did the API's view read? (A clean-clone run once saw no state at all
# with the node dead, and its output could not say which side had stopped.)
_WORKER_SERIES = (
    "bw_aggregator_events_counted_total",
    "bw_aggregator_states_published_total",
    "bw_aggregator_publish_queue",
)


def _api_metrics(api: TestClient) -> Callable[[], str]:
    """The in-process API's /metrics page, read when a wait fails."""
    return lambda: str(api.get("/metrics").text)


_RECONNECTS = re.compile(r"Unable connect|Failed fetch messages|NodeNotReadyError")


def _where_it_stopped(workers: tuple[Worker, ...], api_metrics: Callable[[], str] | None) -> str:
    out = []
    for w in workers:
        code = w.process.poll()
        out.append(f"\n--- worker {w.port}: " + ("running" if code is None else f"exited {code}"))
        if code is None:
            try:
                out.append("; ".join(f"{n} {_metric(w, n):,.0f}" for n in _WORKER_SERIES))
            except OSError as exc:
                out.append(f"metrics unreadable: {exc!r}")
        # The last lines that are not the dead node's reconnect attempts (10 a second).
        lines = w.log_path.read_text(errors="replace").splitlines()
        out += [x for x in lines if not _RECONNECTS.search(x)][-40:]
    if api_metrics is not None:
        lines = api_metrics().splitlines()
        out.append(
            "\n--- API view: "
            + "; ".join(
                x for x in lines if x.startswith(("bw_api_view_lag", "bw_api_view_fetch_age"))
            )
        )
    return "\n".join(out)


def _metric(worker: Worker, prefix: str) -> float:
    return sum(
        float(line.split()[-1]) for line in worker.metrics().splitlines() if line.startswith(prefix)
    )


class Stream:
    """Posts ``events`` in batches of ``size`` from ``threads`` threads, as field units
    do: a batch answered 503 is sent again (after ``retry_pause``) until a 202.

    Records every status code, the slowest answer, the acknowledged ids and when the
    first 202 after ``mark()`` came back."""

    def __init__(
        self,
        ingest: TestClient,
        events: list[dict[str, Any]],
        size: int,
        *,
        threads: int = 2,
        pace: float = 0.0,
        retry_pause: float = 0.2,
    ) -> None:
        self.ingest = ingest
        self.batches: queue.Queue[list[dict[str, Any]]] = queue.Queue()
        for start in range(0, len(events), size):
            self.batches.put(events[start : start + size])
        self.pace = pace
        self.retry_pause = retry_pause
        self.statuses: Counter[int] = Counter()
        self.acknowledged: set[str] = set()
        self.slowest = 0.0
        self.errors: list[BaseException] = []
        self.marked_at: float | None = None
        self.first_ack_after_mark: float | None = None
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Stream:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        """Send no further batch (one being retried is finished)."""
        while True:
            try:
                self.batches.get_nowait()
            except queue.Empty:
                return

    def mark(self) -> None:
        with self.lock:
            self.marked_at = time.monotonic()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        if self.errors:
            raise self.errors[0]
        assert not any(t.is_alive() for t in self.threads), "the stream did not finish"

    @property
    def acked(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def _run(self) -> None:
        try:
            while True:
                try:
                    batch = self.batches.get_nowait()
                except queue.Empty:
                    return
                self._post(batch)
                if self.pace:
                    time.sleep(self.pace)
        except BaseException as exc:  # handed to the test thread by join()
            self.errors.append(exc)

    def _post(self, batch: list[dict[str, Any]]) -> None:
        ids = sorted(e["event_id"] for e in batch)
        for _attempt in range(200):
            started = time.monotonic()
            resp = self.ingest.post("/v1/field-events", json=batch)
            took = time.monotonic() - started
            with self.lock:
                self.statuses[resp.status_code] += 1
                self.slowest = max(self.slowest, took)
            assert resp.status_code in (202, 503), f"{resp.status_code}: {resp.text[:300]}"
            if resp.status_code == 202:
                body = resp.json()
                assert sorted(body["accepted"] + body["duplicate"]) == ids
                with self.lock:
                    self.acknowledged.update(ids)
                    if self.marked_at is not None and self.first_ack_after_mark is None:
                        self.first_ack_after_mark = time.monotonic() - self.marked_at
                return
            assert resp.headers["retry-after"].isdigit()
            time.sleep(self.retry_pause)
        raise AssertionError("a batch was refused 200 times")


# --- the tests -------------------------------------------------------------------------


def test_leader_of_field_events_killed_mid_stream_every_ack_counted_once(
    cluster: EmbeddedCluster,
    cluster_deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    dep = cluster_deployment
    topic = dep.prefix + "field-events"
    layout = _layout(dep, topic)
    assert all(len(r) == 3 and len(i) == 3 for _, r, i in layout.values()), layout
    worker = start_worker()
    events = _events(20_000, seed=21)
    stream = Stream(ingest, events, 200).start()
    try:
        wait_until(lambda: stream.acked >= 5_000, 120, "a quarter of the stream acknowledged")
        victim = cluster.node(layout[0][0])  # the leader of partition 0
        led = sorted(p for p, (leader, _, _) in layout.items() if leader == victim.node_id)
        acked_at_kill = stream.acked
        victim.kill()
        stream.mark()
        killed_at = time.monotonic()

        def moved() -> bool:
            now = _layout(dep, topic)
            return all(now[p][0] not in (victim.node_id, -1) for p in led)

        wait_until(moved, 60, "new leaders for the dead node's partitions")
        elected = time.monotonic() - killed_at
    finally:
        stream.join(timeout=240)
    assert set(stream.statuses) <= {202, 503}, stream.statuses
    assert stream.acknowledged == {e["event_id"] for e in events}
    assert acked_at_kill < len(events), "the node died after the stream had ended"
    _wait_exact(
        lambda p: api.get(p).json(),
        _expected(events),
        "after the leader's death",
        (worker,),
        _api_metrics(api),
    )
    counted = _metric(worker, "bw_aggregator_events_counted_total{")
    assert counted == len(events), f"{counted} events counted, {len(events)} posted once each"
    isr_while_down = min(len(i) for _, _, i in _layout(dep, topic).values())
    healed = _heal(cluster, victim, dep)
    print(
        f"\nleader of {topic} partitions {led} (node {victim.node_id}) SIGKILLed after "
        f"{acked_at_kill:,} of {len(events):,} events were acknowledged; answers "
        f"{dict(stream.statuses)}; slowest answer {stream.slowest:.2f}s; new leaders "
        f"after {elected:.1f}s; first 202 after the kill at "
        f"{stream.first_ack_after_mark or float('nan'):.2f}s; smallest ISR while down "
        f"{isr_while_down}; {len(stream.acknowledged):,} acknowledged, counted "
        f"{counted:,.0f} (exactly once each); restarted node healed the cluster "
        f"(0 under-replicated) in {healed:.1f}s"
    )


def test_broker_killed_while_the_changelog_is_written_end_state_exact_then_heals(
    cluster: EmbeddedCluster,
    cluster_deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
) -> None:
    dep = cluster_deployment
    changelog = f"{dep.app_id}-section-aggregates-changelog"
    first = start_worker()
    layout = _layout(dep, changelog)
    assert all(len(r) == 3 for _, r, _ in layout.values()), f"changelog replicas: {layout}"
    events = _events(24_000, seed=22)
    # Paced (~4,000 events/s for ~5 s): the worker counts as fast as ingest takes
    # events, so an unpaced stream was often counted whole before the kill.
    stream = Stream(ingest, events[:20_000], 200, pace=0.1).start()
    try:
        wait_until(
            lambda: _metric(first, "bw_aggregator_events_counted_total{") >= 4_000,
            120,
            "the aggregator counting (and writing its changelog)",
        )
        victim = cluster.node(_busiest_leader(dep, changelog))
        changelog_end = _metric(first, "bw_aggregator_events_counted_total{")
        victim.kill()
    finally:
        stream.join(timeout=240)
    assert set(stream.statuses) <= {202, 503}, stream.statuses
    assert changelog_end < 20_000, "the node died after counting had ended"

    def get(path: str) -> Any:
        return api.get(path).json()

    api_metrics = _api_metrics(api)
    _wait_exact(get, _expected(events[:20_000]), "with a node dead", (first,), api_metrics)
    urp_down = asyncio.run(under_replicated(dep.settings()))
    assert urp_down > 0, "a dead node should leave partitions under-replicated"
    # A worker that must rebuild its state from the changelog written meanwhile.
    first.stop(signal.SIGKILL)
    second = start_worker()
    rest = Stream(ingest, events[20_000:], 500).start()
    rest.join(timeout=120)
    _wait_exact(
        get, _expected(events), "after a restore from that changelog", (second,), api_metrics
    )
    healed = _heal(cluster, victim, dep)
    print(
        f"\nnode {victim.node_id} (leading most partitions of the changelog) SIGKILLed "
        f"after {changelog_end:,.0f} events counted; answers {dict(stream.statuses)} "
        f"then {dict(rest.statuses)}; {urp_down} partitions under-replicated while it was "
        f"down; counts exact ({len(events):,} events) with the node dead and after a "
        f"second worker restored from the changelog; restart healed the cluster "
        f"(0 under-replicated) in {healed:.1f}s; redelivered events the "
        f"second worker skipped by event_id: "
        f"{_metric(second, 'bw_aggregator_duplicate_events_total '):,.0f}"
    )


def _start_api(dep: Deployment, workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log_path = workdir / "api.log"
    env = dep.env()
    env.update({"BW_HOST": "127.0.0.1", "BW_PORT": str(port), "BW_AUTH_ENABLED": "false"})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.api"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_http_ready(
        f"http://127.0.0.1:{port}/readyz", proc, name="api", log_path=log_path, timeout=60
    )
    return proc, port, log_path


def test_api_feed_stays_live_through_a_leader_change(
    cluster: EmbeddedCluster,
    cluster_deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    tmp_path: Path,
) -> None:
    dep = cluster_deployment
    worker = start_worker(wait=False)
    proc, port, log_path = _start_api(dep, tmp_path)
    worker.wait_ready()
    updates: list[float] = []  # arrival of each frame carrying a section update
    stop = threading.Event()
    feed_errors: list[BaseException] = []

    def read_feed() -> None:
        try:
            with connect(f"ws://127.0.0.1:{port}/ws/feed", open_timeout=10) as ws:
                while not stop.is_set():
                    try:
                        frame = orjson.loads(ws.recv(timeout=1.0))
                    except TimeoutError:
                        continue
                    if any(m["type"] == "section_state" for m in frame["messages"]):
                        updates.append(time.monotonic())
        except BaseException as exc:  # handed to the test thread
            feed_errors.append(exc)

    reader = threading.Thread(target=read_feed, daemon=True)
    reader.start()
    # A steady flow: 20 events every 0.1 s from one client, until 8 s after the kill.
    events = _events(10_000, seed=23)
    stream = Stream(ingest, events, 20, threads=1, pace=0.1).start()
    acked: list[dict[str, Any]] = []
    try:
        wait_until(lambda: len(updates) >= 10, 60, "the feed to carry updates")
        time.sleep(1)
        victim = cluster.node(_busiest_leader(dep, dep.prefix + "section-state"))
        killed_at = time.monotonic()
        victim.kill()
        wait_until(
            lambda: time.monotonic() > killed_at + 8 and sum(t > killed_at for t in updates) >= 10,
            90,
            "updates for 8 s after the kill",
        )
        stream.stop()
        stream.join(timeout=60)
        acked = [e for e in events if e["event_id"] in stream.acknowledged]
        _wait_exact(
            lambda path: orjson.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()
            ),
            _expected(acked),
            "the API process's view after the leader change",
        )
    finally:
        stop.set()
        reader.join(timeout=10)
        if any(t.is_alive() for t in stream.threads):
            stream.join(timeout=120)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    assert not feed_errors, f"{feed_errors[0]!r}; API log: {tail(log_path)}"
    assert set(stream.statuses) <= {202, 503}, stream.statuses

    def longest_gap(times: list[float]) -> float:
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    before = [t for t in updates if t <= killed_at]
    around = [t for t in updates if t >= before[-1]]
    gap_before = longest_gap(before[1:])
    gap_through = longest_gap(around)
    healed = _heal(cluster, victim, dep)
    print(
        f"\nWebSocket feed through the death of node {victim.node_id} (leader of most "
        f"section-state partitions): {len(updates)} update frames; longest gap "
        f"{gap_through:.2f}s through the leader change (before it: {gap_before:.2f}s); "
        f"ingest answers {dict(stream.statuses)}; the view exact for the {len(acked):,} "
        f"acknowledged events; heal {healed:.1f}s"
    )
    assert gap_through < 30, f"the feed stalled for {gap_through:.1f}s"
