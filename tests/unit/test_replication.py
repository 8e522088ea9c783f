"""Replication by cluster size, refused when impossible; producers acks=all and idempotent;
the settings of a 3-node embedded cluster; up's scale-out flags."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import UpSettings, build_parser, up_counts
from services.common.errors import ConfigError
from services.common.kafka import make_producer, resolve_replication
from services.common.serve import listen_socket
from services.common.settings import REPO_ROOT, CommonSettings
from services.runtime.broker import EmbeddedCluster, EmbeddedKafka


@pytest.mark.parametrize(("brokers", "want"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_defaults_by_cluster_size(brokers: int, want: tuple[int, int]) -> None:
    r = resolve_replication(brokers)
    assert (r.factor, r.min_insync, r.brokers) == (*want, brokers)


def test_settings_win_over_the_defaults() -> None:
    r = resolve_replication(5, factor=5, min_insync=3)
    assert (r.factor, r.min_insync) == (5, 3)
    assert resolve_replication(3, factor=1).min_insync == 1


def test_more_copies_than_brokers_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"BW_TOPIC_REPLICATION_FACTOR=3: .* only 1 broker;"):
        resolve_replication(1, factor=3)


def test_more_in_sync_than_copies_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"BW_TOPIC_MIN_INSYNC_REPLICAS=3: more than .* 2"):
        resolve_replication(3, factor=2, min_insync=3)


def test_replication_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BW_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("BW_TOPIC_MIN_INSYNC_REPLICAS", "2")
    s = CommonSettings()
    assert (s.topic_replication_factor, s.topic_min_insync_replicas) == (3, 2)


async def test_every_service_producer_is_acks_all_and_idempotent() -> None:
    producer = make_producer(CommonSettings(kafka_bootstrap="127.0.0.1:1"))
    assert producer._sender._acks == -1  # "all"
    assert producer._txn_manager is not None  # what enable_idempotence creates


def _aggregator_producer_settings(tmp_path: Path, *names: str) -> list[str]:
    """The aggregator's Faust producer settings ``names``, printed by a process of its
    own: importing the Faust app sets uvloop as the loop policy."""
    code = (
        "from services.aggregator.app import app\n"
        "p = app.producer\n"
        "s = {**p._settings_default(), **p._settings_extra()}\n"
        f"print(*(s[n] for n in {names!r}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env["BW_DATA_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_the_aggregators_faust_producer_is_acks_all_and_idempotent(tmp_path: Path) -> None:
    assert _aggregator_producer_settings(tmp_path, "acks", "enable_idempotence") == [
        "all",
        "True",
    ]


def test_the_aggregators_producer_batches_a_whole_handle_in_one_request(tmp_path: Path) -> None:
    # aiokafka's add_message waits for a full batch to be drained (one produce round
    # trip) before it takes the next record of that partition: with Faust's 16 KiB a
    # handle touching more than three sections of one partition waited for each.
    batch, linger = _aggregator_producer_settings(tmp_path, "max_batch_size", "linger_ms")
    core = 4_600  # a section core with its outbox (bench.aggregator_floors prints it)
    assert 64 * core <= int(batch) < 1_048_588  # under the broker's message.max.bytes
    assert float(linger) == 0


def _props(node: EmbeddedKafka) -> dict[str, str]:
    path = node._properties()
    return dict(
        line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line
    )


def test_a_three_node_cluster_replicates_kafkas_own_topics_too(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(tmp_path, 3)
    ports = [p for n in cluster.nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == 6, "every node its own broker and controller port"
    props = [_props(n) for n in cluster.nodes]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    voters = {p["controller.quorum.voters"] for p in props}
    assert len(voters) == 1 and voters.pop().count("@127.0.0.1:") == 3
    for p in props:
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["transaction.state.log.replication.factor"] == "3"
        assert p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
        assert p["log.dirs"].startswith(str(tmp_path / f"node-{p['node.id']}"))
        # Kafka's own no-op record interval in a cluster; only a single node spaces them.
        assert "metadata.max.idle.interval.ms" not in p
    # A restart keeps a node's address; the cluster id is shared and kept.
    again = EmbeddedCluster(tmp_path, 3)
    assert again.bootstrap == cluster.bootstrap
    assert {n.cluster_id for n in again.nodes} == {(tmp_path / "cluster.id").read_text()}


def test_one_node_keeps_single_copies(tmp_path: Path) -> None:
    node = EmbeddedKafka(tmp_path)
    node.choose_ports()
    p = _props(node)
    assert (p["offsets.topic.replication.factor"], p["min.insync.replicas"]) == ("1", "1")


def _up_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["up", *argv])


def test_up_scale_flags_win_over_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BW_WORKERS", "3")
    settings = UpSettings()
    counts = up_counts(_up_args("--brokers", "3", "--ingest", "2", "--api", "4"), settings)
    assert counts == {"brokers": 3, "workers": 3, "ingest": 2, "api": 4}
    # --api and --api-port are two options, not a prefix of one another.
    assert _up_args("--api-port", "9000").api is None
    with pytest.raises(ConfigError, match="--workers 0"):
        up_counts(_up_args("--workers", "0"), settings)


def test_reuse_port_lets_two_processes_share_a_port() -> None:
    first = listen_socket("127.0.0.1", 0, reuse_port=True, name="BW_PORT")
    try:
        first.listen(8)
        port = first.getsockname()[1]
        second = listen_socket("127.0.0.1", port, reuse_port=True, name="BW_PORT")
        second.listen(8)
        second.close()
        with pytest.raises(ConfigError, match=f"BW_PORT {port}: cannot bind"):
            listen_socket("127.0.0.1", port, reuse_port=False, name="BW_PORT")
    finally:
        first.close()
    assert isinstance(first, socket.socket)


def test_a_single_node_writes_its_no_op_metadata_record_every_5_s(tmp_path: Path) -> None:
    node = EmbeddedKafka(tmp_path / "kafka")
    node.choose_ports()
    assert _props(node)["metadata.max.idle.interval.ms"] == "5000"
