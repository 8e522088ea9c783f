"""The embedded broker: real Apache Kafka 3.9 in KRaft mode, data on disk.

One node by default (:class:`EmbeddedKafka`); :class:`EmbeddedCluster` runs
three (or more) of them as one replicated cluster on 127.0.0.1.

Its jars (``org.apache.kafka:kafka_2.13`` and what it needs at run time) are
fetched from Maven Central by Maven, from ``deploy/kafka/pom.xml``, once, into
a cache directory. Storage is formatted on first start; a later start with the
same data directory finds its data again. The broker runs on the machine's
JDK 17 with a modest heap.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from services.common.errors import BorderwatchError
from services.common.settings import REPO_ROOT

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"

LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.state.change.logger=WARN
"""


class BrokerError(BorderwatchError):
    """The embedded broker cannot be installed or started; the message says what to do."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "borderwatch" / f"kafka-{KAFKA_VERSION}"


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(
            f"`{tool}` was not found on PATH; the embedded Kafka broker needs it. "
            f"Install {package} (on Debian/Ubuntu: `apt-get install {package}`), "
            "or point borderwatch at an existing cluster with BW_KAFKA_BOOTSTRAP."
        )
    return path


def install(cache_dir: Path | None = None, *, quiet: bool = True) -> Path:
    """Fetch the broker's jars into ``cache_dir/libs`` unless they are there; returns it."""
    cache_dir = cache_dir or default_cache_dir()
    libs = cache_dir / "libs"
    marker = cache_dir / ".complete"
    if marker.exists() and any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        return libs
    mvn = _need("mvn", "maven")
    _need("java", "openjdk-17-jre-headless")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=cache_dir))
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    log.info("fetching Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(
            f"Maven could not fetch the Kafka {KAFKA_VERSION} jars (exit {result.returncode}). "
            f"Maven Central must be reachable. Last lines:\n{tail}"
        )
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    (cache_dir / "log4j.properties").write_text(LOG4J, encoding="utf-8")
    marker.write_text(KAFKA_VERSION, encoding="utf-8")
    return libs


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _pdeathsig() -> None:
    """In the child: get SIGTERM if the parent dies, so no broker is left orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def replication_defaults(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers``: three
    copies and two in sync once there are three brokers, so one broker may die
    without losing an acknowledged record or refusing writes."""
    factor = min(3, max(1, brokers))
    return factor, 2 if factor >= 3 else 1


class EmbeddedKafka:
    """One KRaft node (broker + controller) on 127.0.0.1.

    Alone it is a one-node cluster. :class:`EmbeddedCluster` gives each node its
    ``node_id``, the ``voters`` of the controller quorum, the shared
    ``cluster_id`` and the cluster's size (which sets the replication of
    Kafka's own topics).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        controller_port: int = 0,
        heap: str = "512m",
        cache_dir: Path | None = None,
        host: str = "127.0.0.1",
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
        cluster_size: int = 1,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.heap = heap
        self.cache_dir = cache_dir or default_cache_dir()
        self._wanted = (port, controller_port)
        self.port = 0
        self.controller_port = 0
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id
        self.cluster_size = cluster_size
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def choose_ports(self, avoid: set[int] | None = None) -> None:
        """Explicit ports win; else the ports of the last run if still free; else free
        ones (none of ``avoid``). Chosen once: a restart keeps its address."""
        if self.port:
            return
        avoid = avoid or set()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        saved: dict[str, int] = {}
        ports_file = self.data_dir / "ports.json"
        if ports_file.exists():
            try:
                saved = json.loads(ports_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = {}
        chosen = []
        for wanted, key in zip(self._wanted, ("port", "controller_port"), strict=True):
            if wanted:
                chosen.append(wanted)
            elif saved.get(key) and saved[key] not in avoid and port_is_free(saved[key], self.host):
                chosen.append(saved[key])
            else:
                chosen.append(_free_port_not_in(avoid | set(chosen), self.host))
        if chosen[0] == chosen[1]:
            chosen[1] = _free_port_not_in(avoid | set(chosen), self.host)
        self.port, self.controller_port = chosen
        ports_file.write_text(
            json.dumps({"port": self.port, "controller_port": self.controller_port}),
            encoding="utf-8",
        )

    def _properties(self) -> Path:
        logs = self.data_dir / "kafka-logs"
        factor, min_isr = replication_defaults(self.cluster_size)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters
            or f"{self.node_id}@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            # Kafka's own topics (group offsets, transactions) and any topic created
            # without explicit settings (Faust's) are replicated like ours.
            "offsets.topic.replication.factor": str(factor),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(factor),
            "transaction.state.log.min.isr": str(min_isr),
            "transaction.state.log.num.partitions": "4",
            "default.replication.factor": str(factor),
            "min.insync.replicas": str(min_isr),
            # A killed node is fenced, and its partitions led elsewhere, after 3 s
            # without a heartbeat instead of 9 s.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "1000",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.min.compaction.lag.ms": "0",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "message.max.bytes": str(8 * 1024 * 1024),
            "replica.fetch.max.bytes": str(8 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.flush.interval.messages": "9223372036854775807",
        }
        if self.cluster_size == 1:
            # The active controller appends a no-op record to the metadata log this
            # often (Kafka's 500 ms) to show it is alive; each one is written and
            # flushed. Every 5 s: an idle single-node broker 2-3 % of a core less
            # (raft-io and quorum-controller threads, 3.7 + 2.0 % -> 1.0 + 1.2 %).
            # A cluster keeps Kafka's default: there the other nodes follow the
            # quorum through its log. With 5 s on every node, `up --brokers 3` failed
            # tests/smoke/test_scale_out.py in one CI run (a producer flush stalled
            # past the group's rebalance timeout) and in 2 of 8 runs here (the
            # cluster did not come up); with the default it has not failed.
            props["metadata.max.idle.interval.ms"] = "5000"
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
        return path

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            _need("java", "openjdk-17-jre-headless"),
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            # A single-node broker on a small machine, sharing its cores with the
            # services: the serial collector and the C1 compiler alone cost less
            # CPU than G1's concurrent threads and C2 (Kafka 49% -> 39% of a core
            # at 200 events/s in python -m bench.feeds --clients 10; young
            # collections of a heap this size take milliseconds).
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.cache_dir / 'log4j.properties'}",
            "-cp",
            str(libs / "*"),
            *args,
        ]

    def start(self) -> subprocess.Popen[bytes]:
        libs = install(self.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.choose_ports()
        props = self._properties()
        if not (self.data_dir / "kafka-logs" / "meta.properties").exists():
            cid_file = self.data_dir / "cluster.id"
            if self.cluster_id is not None:
                cid_file.write_text(self.cluster_id, encoding="utf-8")
            elif not cid_file.exists():
                cid_file.write_text(_cluster_id(), encoding="utf-8")
            fmt = subprocess.run(
                self._java(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    # "=" form: a generated id may start with "-" (1 in 64).
                    "--cluster-id=" + cid_file.read_text(encoding="utf-8").strip(),
                    "-c",
                    str(props),
                    "--ignore-formatted",
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(props)),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pdeathsig,
        )
        log_file.close()
        return self.process

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the broker accepts connections and answers metadata."""
        import asyncio

        from services.common.kafka import wait_for_broker
        from services.common.settings import CommonSettings

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited with code {self.process.returncode}; "
                    f"last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise BrokerError(
                f"the Kafka broker did not listen on {self.bootstrap} in {timeout:.0f}s"
            )
        remaining = max(1.0, deadline - time.monotonic())
        asyncio.run(wait_for_broker(CommonSettings(kafka_bootstrap=self.bootstrap), remaining))

    def kill(self) -> None:
        """SIGKILL the node (a crash: no clean shutdown, no leadership hand-over)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _free_port_not_in(avoid: set[int], host: str) -> int:
    for _ in range(100):
        port = free_port(host)
        if port not in avoid:
            return port
    raise BrokerError("no free port on 127.0.0.1")


class EmbeddedCluster:
    """``size`` KRaft nodes on 127.0.0.1, each broker and controller at once, each with
    its own ports and data directory (``data_dir/node-<id>``).

    Combined nodes, not separate brokers and controllers: three JVMs instead of six
    on a small shared machine, and a quorum of three controllers survives one node's
    death as the brokers' replicas do (Kafka recommends separate controllers for big
    production clusters, where a broker's load must not slow the quorum).
    """

    def __init__(
        self,
        data_dir: Path,
        size: int = 3,
        *,
        heap: str = "384m",
        first_port: int = 0,
        cache_dir: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if size < 1:
            raise BrokerError(f"a cluster needs at least one broker, not {size}")
        self.data_dir = data_dir
        self.size = size
        self.host = host
        data_dir.mkdir(parents=True, exist_ok=True)
        cid_file = data_dir / "cluster.id"
        if not cid_file.exists():
            cid_file.write_text(_cluster_id(), encoding="utf-8")
        cluster_id = cid_file.read_text(encoding="utf-8").strip()
        self.nodes = [
            EmbeddedKafka(
                data_dir / f"node-{i}",
                port=first_port + i - 1 if first_port else 0,
                heap=heap,
                cache_dir=cache_dir,
                host=host,
                node_id=i,
                cluster_id=cluster_id,
                cluster_size=size,
            )
            for i in range(1, size + 1)
        ]
        taken: set[int] = set()
        for node in self.nodes:
            node.choose_ports(taken)
            taken |= {node.port, node.controller_port}
        voters = ",".join(f"{n.node_id}@{host}:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.voters = voters

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> EmbeddedKafka:
        return self.nodes[node_id - 1]

    def start(self) -> None:
        install(self.nodes[0].cache_dir)
        for node in self.nodes:
            node.start()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until every node answers and the cluster counts all its brokers."""
        import asyncio

        from services.common.kafka import wait_for_brokers
        from services.common.settings import CommonSettings

        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
        # Each broker has its own copy of the metadata: ask every one, or a topic
        # created through a broker that has not yet seen the others gets fewer copies.
        for node in self.nodes:
            asyncio.run(
                wait_for_brokers(
                    CommonSettings(kafka_bootstrap=node.bootstrap),
                    self.size,
                    max(1.0, deadline - time.monotonic()),
                )
            )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node at once (one after another, the last ones would wait for a
        quorum that is gone), then SIGKILL what is left at the deadline."""
        running = [n for n in self.nodes if n.running()]
        for node in running:
            assert node.process is not None
            try:
                os.killpg(node.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for node in running:
            assert node.process is not None
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.kill()


def tail(path: Path, lines: int = 20) -> str:
    try:
        data = path.read_bytes()[-16384:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])
