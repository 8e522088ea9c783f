"""Storage formatting copes with any generated cluster id (some start with "-")."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.broker import EmbeddedKafka, install

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_a_cluster_id_starting_with_a_dash_formats(tmp_path: Path) -> None:
    install()
    data = tmp_path / "kafka"
    data.mkdir()
    (data / "cluster.id").write_text("-Ab3dEfGhIjKlMnOpQrStUw", encoding="utf-8")
    broker = EmbeddedKafka(data)
    broker.start()
    try:
        broker.wait_ready(timeout=90)
    finally:
        broker.stop()
    assert (data / "kafka-logs" / "meta.properties").read_text().count(
        "-Ab3dEfGhIjKlMnOpQrStUw"
    ) == 1
