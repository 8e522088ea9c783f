"""`borderwatch topics create` checks the replication it is asked for against the cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.runtime.broker import free_port
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def _topics_create(kafka: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    base.update({"BW_KAFKA_BOOTSTRAP": kafka, "BW_TOPIC_PREFIX": f"r{uuid.uuid4().hex[:8]}."})
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from services.cli import main; main()", "topics", "create"],
        env=base,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_three_copies_on_one_broker_are_refused_naming_the_setting(kafka: str) -> None:
    out = _topics_create(kafka, BW_TOPIC_REPLICATION_FACTOR="3")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "BW_TOPIC_REPLICATION_FACTOR=3: the cluster has only 1 broker" in out.stderr
    assert "created" not in out.stdout


def test_one_broker_gets_single_copies_by_default(kafka: str) -> None:
    out = _topics_create(kafka)
    assert out.returncode == 0, out.stderr
    assert "replication factor 1, min.insync.replicas 1 (1 broker;" in out.stdout


def test_an_aggregator_asked_for_impossible_replication_stops_naming_the_setting(
    kafka: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env.update(
        {
            "BW_KAFKA_BOOTSTRAP": kafka,
            "BW_TOPIC_PREFIX": f"r{uuid.uuid4().hex[:8]}.",
            "BW_TOPIC_REPLICATION_FACTOR": "3",
            "BW_DATA_DIR": str(tmp_path),
            "BW_WEB_PORT": str(free_port()),
        }
    )
    out = subprocess.run(
        [sys.executable, "-m", "services.aggregator"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "BW_TOPIC_REPLICATION_FACTOR=3: the cluster has only 1 broker" in out.stderr
