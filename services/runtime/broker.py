"""The embedded broker: real Apache Kafka 3.9 in KRaft mode, one node, data on disk.

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


class EmbeddedKafka:
    """One KRaft node (broker + controller) on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        controller_port: int = 0,
        heap: str = "512m",
        cache_dir: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.heap = heap
        self.cache_dir = cache_dir or default_cache_dir()
        self._wanted = (port, controller_port)
        self.port = 0
        self.controller_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def _choose_ports(self) -> None:
        """Explicit ports win; else the ports of the last run if still free; else free ones."""
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
            elif saved.get(key) and port_is_free(saved[key], self.host):
                chosen.append(saved[key])
            else:
                chosen.append(free_port(self.host))
        if chosen[0] == chosen[1]:
            chosen[1] = free_port(self.host)
        self.port, self.controller_port = chosen
        ports_file.write_text(
            json.dumps({"port": self.port, "controller_port": self.controller_port}),
            encoding="utf-8",
        )

    def _properties(self) -> Path:
        logs = self.data_dir / "kafka-logs"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.min.compaction.lag.ms": "0",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "message.max.bytes": str(8 * 1024 * 1024),
            "replica.fetch.max.bytes": str(8 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.flush.interval.messages": "9223372036854775807",
        }
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
        self._choose_ports()
        props = self._properties()
        if not (self.data_dir / "kafka-logs" / "meta.properties").exists():
            cid_file = self.data_dir / "cluster.id"
            if not cid_file.exists():
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


def tail(path: Path, lines: int = 20) -> str:
    try:
        data = path.read_bytes()[-16384:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])
