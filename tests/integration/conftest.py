"""Integration fixtures: the real embedded Kafka broker and real service processes.

The broker (Apache Kafka 3.9, KRaft) is started once per session on a free
127.0.0.1 port with its data in a temporary directory, and stopped by PID in
``finally``. Each test gets fresh topic names and a fresh consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app as create_api
from services.api.settings import ApiSettings
from services.common.kafka import ensure_topics, make_consumer
from services.common.settings import CommonSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.runtime.broker import EmbeddedCluster, free_port, tail
from services.runtime.supervisor import wait_http_ready

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Deployment:
    """Names for one test's private slice of the cluster."""

    bootstrap: str
    prefix: str
    app_id: str
    partitions: int = 6

    def settings(self) -> CommonSettings:
        return CommonSettings(kafka_bootstrap=self.bootstrap, topic_prefix=self.prefix)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
        env.update(
            {
                "BW_KAFKA_BOOTSTRAP": self.bootstrap,
                "BW_TOPIC_PREFIX": self.prefix,
                "BW_APP_ID": self.app_id,
                "BW_FIELD_PARTITIONS": str(self.partitions),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A replicated cluster of three real Kafka 3.9 KRaft nodes (each broker and
    controller) on free 127.0.0.1 ports, for the tests of one module (they may kill
    and restart nodes); every node is stopped by PID at the end."""
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), 3, heap="384m")
    cluster.start()
    try:
        cluster.wait_ready(timeout=120)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_deployment(kafka_cluster: EmbeddedCluster) -> Deployment:
    """A test's own topics on the 3-node cluster (3 copies, min.insync.replicas 2)."""
    tag = uuid.uuid4().hex[:10]
    dep = Deployment(kafka_cluster.bootstrap, prefix=f"c{tag}.", app_id=f"agg-{tag}")
    # Every node must count all three brokers first: on a loaded machine a broker
    # can miss its 3 s session with the controller for a moment, and the default
    # replication (by the brokers alive) would then give the topics 2 copies.
    kafka_cluster.wait_ready(90)
    settings = dep.settings().model_copy(
        update={"topic_replication_factor": kafka_cluster.size, "topic_min_insync_replicas": 2}
    )
    asyncio.run(ensure_topics(settings, dep.partitions))
    return dep


@pytest.fixture
def deployment(kafka: str) -> Deployment:
    tag = uuid.uuid4().hex[:10]
    dep = Deployment(kafka, prefix=f"t{tag}.", app_id=f"agg-{tag}")
    asyncio.run(ensure_topics(dep.settings(), dep.partitions))
    return dep


class Worker:
    """One aggregator worker process (``python -m services.aggregator``)."""

    def __init__(self, dep: Deployment, workdir: Path, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = workdir / f"aggregator-{self.port}.log"
        env = dep.env()
        env.update(
            {
                "BW_WEB_PORT": str(self.port),
                "BW_DATA_DIR": str(workdir / f"agg-{self.port}"),
                "BW_TICK_SECONDS": "1",
                "BW_LOG_LEVEL": "INFO",
            }
        )
        env.update(extra_env)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.aggregator"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_http_ready(
            self.url + "/readyz",
            self.process,
            name="aggregator",
            log_path=self.log_path,
            timeout=timeout,
        )

    def metrics(self, *names: str) -> str:
        """The worker's /metrics page; with ``names``, only those series (``name[]``)."""
        query = "?" + urllib.parse.urlencode([("name[]", n) for n in names]) if names else ""
        with urllib.request.urlopen(self.url + "/metrics" + query, timeout=5) as resp:
            return str(resp.read().decode())

    def log(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def worker_starter(dep: Deployment, workdir: Path) -> Iterator[Callable[..., Worker]]:
    """``start(**env)`` starts a worker of ``dep``; every one is killed at the end."""
    workers: list[Worker] = []

    def start(wait: bool = True, **extra_env: str) -> Worker:
        worker = Worker(dep, workdir, extra_env)
        workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop(signal.SIGKILL if worker.process.poll() is None else signal.SIGTERM)


@pytest.fixture
def start_worker(deployment: Deployment, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    with worker_starter(deployment, tmp_path) as start:
        yield start


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def event(section: str, kind: str, count: int, at: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "kind": kind,
        "section_id": section,
        "observed_at": at.isoformat(),
        "count": count,
        "source": {"type": "thermal_camera", "id": "TC-1"},
        "confidence": "high",
    }


@contextlib.contextmanager
def ingest_client(dep: Deployment, **overrides: Any) -> Iterator[TestClient]:
    """An in-process ingest on ``dep``'s topics (authentication off), once ready."""
    settings = IngestSettings(
        kafka_bootstrap=dep.bootstrap, topic_prefix=dep.prefix, auth_enabled=False, **overrides
    )
    with TestClient(create_ingest(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        yield client


@contextlib.contextmanager
def api_client(dep: Deployment) -> Iterator[TestClient]:
    """An in-process API on ``dep``'s topics (authentication off), once its view is ready."""
    settings = ApiSettings(
        kafka_bootstrap=dep.bootstrap, topic_prefix=dep.prefix, auth_enabled=False
    )
    with TestClient(create_api(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "API view ready")
        yield client


@pytest.fixture
def ingest(deployment: Deployment) -> Iterator[TestClient]:
    with ingest_client(deployment) as client:
        yield client


@pytest.fixture
def api(deployment: Deployment) -> Iterator[TestClient]:
    with api_client(deployment) as client:
        yield client


def read_alerts(
    dep: Deployment, expect_at_least: int = 0, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Every message on the test's alerts topic, read from the beginning."""

    async def read(expect_at_least: int) -> list[dict[str, Any]]:
        consumer = make_consumer(dep.settings(), dep.prefix + "alerts")
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=5)
                for records in batch.values():
                    out += [orjson.loads(r.value) for r in records]
                if expect_at_least and len(out) >= expect_at_least:
                    # Keep reading briefly: a duplicate would show up right behind.
                    expect_at_least = 0
                    deadline = min(deadline, loop.time() + 2.0)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read(expect_at_least))
