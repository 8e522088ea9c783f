"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from services.runtime.broker import EmbeddedKafka

# Faust reads these to override App(...) arguments; tests must not inherit them.
for _name in ("BROKER_URL", "STORE_URL", "WEB_URL", "APP_DEBUG"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real embedded Kafka broker (3.9, KRaft) on a free 127.0.0.1 port, shared
    by every test of the session that needs one; stopped by PID at the end."""
    broker = EmbeddedKafka(tmp_path_factory.mktemp("kafka"), heap="768m")
    broker.start()
    try:
        broker.wait_ready(timeout=90)
        yield broker.bootstrap
    finally:
        broker.stop()
