"""The service processes' garbage-collector settings (services/common/gctune.py)."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from services.common import gctune


def _pauses(generation: str) -> float:
    value = REGISTRY.get_sample_value("bw_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


def test_tune_freezes_start_up_raises_thresholds_observes_pauses_and_undoes() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    startup = [[i] for i in range(1_000)]  # start-up objects: lists, tracked
    restore = gctune.tune()
    try:
        assert gc.get_threshold() == gctune.THRESHOLDS
        assert gc.get_freeze_count() >= frozen_before + len(startup)
        counted = _pauses("2")
        gc.collect()
        assert _pauses("2") == counted + 1
        sum_after = REGISTRY.get_sample_value("bw_gc_pause_seconds_sum", {"generation": "2"})
        assert sum_after is not None and sum_after > 0
    finally:
        restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    counted = _pauses("2")
    gc.collect()
    assert _pauses("2") == counted  # no longer observed once undone
