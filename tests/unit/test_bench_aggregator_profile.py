"""bench.aggregator's py-spy profiles of the fill's slices (``--fill-profile``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.aggregator import _spy, profile_table, stack_counts

ROOT = "main (/x/services/aggregator/__main__.py);run_worker (/x/services/aggregator/agents.py)"
APPLY = f"{ROOT};_handle (/x/agents.py);Engine.apply_record (/x/state.py)"


def _raw(path: Path, lines: list[tuple[str, int]]) -> Path:
    path.write_text(
        "".join(f"thread (1): MainThread;{stack} {n}\n" for stack, n in lines), encoding="utf-8"
    )
    return path


def test_a_function_counts_once_per_sample_however_often_it_is_on_the_stack(
    tmp_path: Path,
) -> None:
    raw = _raw(
        tmp_path / "fill-1.txt",
        [
            (f"{APPLY};id_hash (/x/state.py)", 3),
            (f"{APPLY};Engine.apply_record (/x/state.py)", 2),  # recursion: still 2 samples
            (f"{ROOT};_decode (/x/agents.py)", 5),
            ("", 9),  # not a stack
        ],
    )
    total, inclusive = stack_counts(raw)
    assert total == 10
    assert inclusive["Engine.apply_record (state.py)"] == 5
    assert inclusive["id_hash (state.py)"] == 3
    assert inclusive["_decode (agents.py)"] == 5
    assert inclusive["run_worker (agents.py)"] == 10


def test_the_table_gives_samples_per_million_events_for_each_mark(tmp_path: Path) -> None:
    _raw(tmp_path / "fill-10.txt", [(f"{APPLY};id_hash (/x/state.py)", 4), (ROOT, 6)])
    _raw(tmp_path / "fill-20.txt", [(f"{APPLY};id_hash (/x/state.py)", 2), (ROOT, 8)])
    lines = profile_table(tmp_path, [10, 20], 500_000)
    assert lines[3] == "| (all) | 20 | 20 |"
    # run_worker is on every stack: an outer frame, left out
    assert not any("run_worker" in line for line in lines)
    assert "| id_hash (state.py) | 8 | 4 |" in lines
    assert "| Engine.apply_record (state.py) | 8 | 4 |" in lines


def test_a_slice_py_spy_did_not_record_is_named_not_a_crash(tmp_path: Path) -> None:
    _raw(tmp_path / "fill-10.txt", [(ROOT, 6)])
    lines = profile_table(tmp_path, [10, 20], 500_000)
    assert len(lines) == 1
    assert "after 20 events held" in lines[0]


def test_py_spy_records_a_running_process_without_pausing_it(tmp_path: Path) -> None:
    busy = subprocess.Popen(
        [sys.executable, "-c", "print('up', flush=True)\nwhile True:\n    sum(range(10_000))"],
        stdout=subprocess.PIPE,
    )
    try:
        assert busy.stdout is not None
        assert busy.stdout.readline() == b"up\n"  # its interpreter is there to be read
        out = tmp_path / "fill-0.txt"
        spy = _spy(busy.pid, out)
        time.sleep(1.5)
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
        total, inclusive = stack_counts(out)
        assert total > 0
        assert any(name.startswith("<module>") for name in inclusive)
    finally:
        busy.kill()
        busy.wait()
