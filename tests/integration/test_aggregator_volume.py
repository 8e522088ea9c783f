"""The aggregator at volume on the real broker: one busy section's full 7-day window.

A section's state used to hold every event id of its window in one table value;
at ~50,000 events the value passed Kafka's 1 MB record limit and the worker
crash-looped. These tests post far more than that to ONE section through
ingest and check that the counts are exact, that no table record grows with the
events held, and that a successor restores the same counts after a SIGKILL.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.models import KINDS
from services.aggregator.state import CORE_BOUND, SEGMENT_IDS, is_core_key
from tests.integration.conftest import Deployment, Worker, wait_until
from tests.integration.test_aggregator import _counted, _post_all, _produce_raw, _read_all

pytestmark = pytest.mark.integration

SECTION = "LV-KRA"
VOLUME = 200_000


def _week_of_events(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` events of one section spread over the last 7 days, oldest first (as a
    section's sensors send them, so none is later than the grace period)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    span = 7 * 24 * 3600 - 2 * 3600  # inside the 7-day window when counted
    offsets = sorted(rng.uniform(0, span) for _ in range(n))
    return [
        {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "kind": rng.choice(KINDS),
            "section_id": SECTION,
            "observed_at": (now - timedelta(seconds=span - dt)).isoformat(),
            "count": rng.randint(1, 3),
            "source": {"type": "thermal_camera", "id": "LV-KRA-TC-01"},
            "confidence": "high",
        }
        for dt in offsets
    ]


def _totals(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for e in events:
        counts[e["kind"]] += e["count"]
    return {k: counts[k] for k in KINDS}


def _counts_7d(api: TestClient) -> dict[str, int]:
    return dict(api.get(f"/api/v1/sections/{SECTION}").json()["counts_7d"])


def test_a_week_of_200k_events_in_one_section_is_exact_bounded_and_survives_sigkill(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
    tmp_path: Path,
) -> None:
    events = _week_of_events(VOLUME, seed=11)
    first = start_worker()
    _post_all(ingest, events, size=5_000)
    expected = _totals(events)
    wait_until(lambda: _counts_7d(api) == expected, 240, f"the exact 7-day counts {expected}")
    assert _counted(first) == VOLUME

    # No record of the section's table grows with the events it holds.
    changelog = _read_all(deployment, f"{deployment.app_id}-section-aggregates-changelog")
    cores = [len(r.value) for r in changelog if r.value is not None and is_core_key(r.key)]
    segments = [len(r.value) for r in changelog if r.value is not None and not is_core_key(r.key)]
    assert cores and max(cores) <= CORE_BOUND, max(cores)
    assert segments and max(segments) <= 8 * SEGMENT_IDS + 256, max(segments)

    # SIGKILL, and a successor restores the same counts from the changelog.
    first.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    second = start_worker()
    restored_in = time.monotonic() - killed_at
    now = datetime.now(UTC)
    more = [  # the last hour: within the grace period of the watermark
        {**e, "observed_at": (now - timedelta(seconds=60 + i)).isoformat()}
        for i, e in enumerate(_week_of_events(100, seed=12))
    ]
    _post_all(ingest, more)
    expected = _totals(events + more)
    wait_until(lambda: _counts_7d(api) == expected, 120, f"the exact 7-day counts {expected}")
    # Records redelivered past ingest's own dedupe (a producer retry, a replay):
    # the restored ids know them, from the oldest day to the newest.
    redelivered = events[:2_500] + events[-2_500:]
    _produce_raw(deployment, redelivered)
    wait_until(
        lambda: _duplicates(second) >= len(redelivered), 60, "the redelivered events noticed"
    )
    assert _counts_7d(api) == expected
    print(f"successor ready {restored_in:.1f}s after the SIGKILL; counted {_counted(second):.0f}")


def _duplicates(worker: Worker) -> float:
    return sum(
        float(line.split()[-1])
        for line in worker.metrics().splitlines()
        if line.startswith("bw_aggregator_duplicate_events_total ")
    )
