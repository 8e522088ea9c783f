"""Quix Streams peer for ``bench/aggregator.py``: the same per-section 1 h tumbling (2 h grace, as ours)
count, run by the benchmark in its own virtualenv (``bench/.peers/quix``), never
a borderwatch dependency.

    BENCH_BOOTSTRAP=127.0.0.1:9092 BENCH_TOPIC=t BENCH_EVENTS=100000 \\
        bench/.peers/quix/bin/python bench/peers/quix_count.py

Each record's value is one field event, or a batch ``{"events": [...]}`` of one
section (as ingest writes them); the key is the section id and the record
timestamp the event time. It prints one JSON line when ``BENCH_EVENTS`` events
were counted: ``{"events": n, "seconds": s}`` from the first record consumed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from typing import Any

from quixstreams import Application

want = int(os.environ["BENCH_EVENTS"])
app = Application(
    broker_address=os.environ["BENCH_BOOTSTRAP"],
    consumer_group=os.environ.get("BENCH_GROUP", "bench-quix"),
    auto_offset_reset="earliest",
    state_dir=os.environ.get("BENCH_STATE_DIR", "/tmp/bench-quix-state"),
    loglevel="WARNING",
)
topic = app.topic(os.environ["BENCH_TOPIC"], key_deserializer="str", value_deserializer="json")
sdf = app.dataframe(topic)
sdf = sdf.apply(lambda value: value["events"] if "events" in value else [value], expand=True)

seen = 0
started: float | None = None


def note(window: Any) -> None:
    """One call per event (``.current()`` emits each window update)."""
    global seen, started
    if started is None:
        started = time.perf_counter()
    seen += 1
    if seen >= want:
        print(json.dumps({"events": seen, "seconds": time.perf_counter() - started}), flush=True)
        app.stop()


sdf = (
    sdf.tumbling_window(timedelta(hours=1), grace_ms=timedelta(hours=2))
    .reduce(
        reducer=lambda total, value: total + value["count"],
        initializer=lambda value: value["count"],
    )
    .current()
)
sdf = sdf.update(note)

if __name__ == "__main__":
    app.run()
    sys.exit(0)
