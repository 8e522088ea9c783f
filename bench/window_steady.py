"""Benchmark: the aggregator's engine through a window that fills and then turns over.

    python -m bench.window_steady [--per-day 700000] [--days 10] [--sections 20]
                                  [--record 50] [--batch 1100]

A worker's clock is the wall clock, so no run of ``bench.aggregator --fill`` can
show a 7-day window turning over: its backlog spans one week, and the ids only
start to expire a week later. This runs the worker's own engine
(:class:`services.aggregator.state.Engine`, the shipped rules and catalogue
layout, :mod:`services.aggregator.windows`) in-process on a simulated clock
instead: ``--per-day`` events a day over ``--sections`` sections, in time order,
``--record`` events to a record (ingest's batched records), each touched section
refreshed and its table records written every ``--batch`` events, as the worker
does per input batch, and every section refreshed once a simulated minute (the
worker's timer). The written records go to a dict, as Faust's memory store keeps
them (``table.data``), tombstones deleting keys.

At the end of each simulated day it prints the ids held, the process RSS and the
engine's CPU per event (apply, refresh, writes). With 700,000 events a day, the
window holds ~5 M ids from day 7 on: RSS should level off there and the cost per
event stay flat. No Kafka and no Faust: the worker adds those on top (see
``bench.aggregator --fill`` for the real worker as the window fills). The
garbage collector is tuned as the worker tunes it once started
(``services.common.gctune``); ``--default-gc`` keeps CPython's defaults, under
which session 9 measured the cost per event growing by a third from day 1 to
day 7, against a sixth tuned.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped]

from bench.aggregator import catalogue
from schemas.models import KINDS
from services.aggregator.rules import load_rules
from services.aggregator.state import BatchOutcome, Engine, SectionAggregate
from services.common import gctune
from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR

DAY = 86_400


def run(per_day: int, days: int, n_sections: int, record: int, batch: int) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="bw-steady-"))
    sections = catalogue(work / "sections.yaml", n_sections)
    engine = Engine(
        Catalogue.load(work / "sections.yaml"), load_rules(DEFAULT_CONFIG_DIR / "rules.yaml")
    )
    aggs = {s: SectionAggregate(section_id=s) for s in sections}
    store: dict[bytes, bytes] = {}
    rng = random.Random(7)
    proc = psutil.Process()
    start = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    step = DAY / per_day
    pending: dict[str, list[dict[str, Any]]] = {s: [] for s in sections}
    records: list[tuple[str, bytes]] = []
    queued = 0
    offset = 0
    spent = {"apply": 0.0, "refresh": 0.0, "writes": 0.0}
    ticking = 0.0  # the timer's refreshes: a cost per section and minute, not per event
    next_tick = start + 60
    rows = []

    def write(agg: SectionAggregate) -> None:
        for key, value in agg.writes():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value

    def flush(now: float) -> None:
        nonlocal offset
        touched: dict[str, SectionAggregate] = {}
        t0 = time.process_time()
        outcome = BatchOutcome()
        for sid, raw in records:
            offset += 1
            # decoded here, as the worker decodes each record it fetched
            engine.apply_record(aggs[sid], 0, offset, orjson.loads(raw)["events"], outcome)
            touched[sid] = aggs[sid]
        t1 = time.process_time()
        for agg in touched.values():
            engine.refresh(agg, now)
        t2 = time.process_time()
        for agg in touched.values():
            write(agg)
        t3 = time.process_time()
        spent["apply"] += t1 - t0
        spent["refresh"] += t2 - t1
        spent["writes"] += t3 - t2
        records.clear()

    for day in range(days):
        before = dict(spent)
        ticked = ticking
        for i in range(per_day):
            now = start + (day * per_day + i) * step
            sid = rng.choice(sections)
            events = pending[sid]
            events.append(
                {
                    "schema_version": 1,
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "kind": rng.choice(KINDS),
                    "section_id": sid,
                    "observed_at": datetime.fromtimestamp(now, UTC).isoformat(),
                    "count": 1,
                }
            )
            if len(events) == record:
                records.append((sid, orjson.dumps({"events": events})))
                pending[sid] = []
                queued += record
            if queued >= batch:
                flush(now)
                queued = 0
            if now >= next_tick:  # the worker's timer: every section, once a minute
                t0 = time.process_time()
                for agg in aggs.values():
                    engine.refresh(agg, now)
                    write(agg)
                ticking += time.process_time() - t0
                next_tick += 60
        held = sum(len(a.dedupe) for a in aggs.values())
        cost = {k: (spent[k] - before[k]) / per_day * 1e6 for k in spent}
        row = {
            "day": day + 1,
            "ids_held": held,
            "rss_mib": proc.memory_info().rss / 2**20,
            "store_records": len(store),
            "us_per_event": cost,
            "us_per_section_tick": (ticking - ticked) / (1440 * len(aggs)) * 1e6,
        }
        rows.append(row)
        print(
            f"day {day + 1:>2}: {held:>9,} ids held, RSS {row['rss_mib']:.0f} MiB, "
            f"{len(store):,} table records; µs per event: "
            + ", ".join(f"{k} {v:.2f}" for k, v in cost.items())
            + f" (total {sum(cost.values()):.2f}); timer µs per section "
            + f"{row['us_per_section_tick']:.0f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-day", type=int, default=700_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--sections", type=int, default=20)
    parser.add_argument("--record", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1100)
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="CPython's collector thresholds, not the worker's (services.common.gctune)",
    )
    args = parser.parse_args()
    if not args.default_gc:
        gctune.tune()  # as the worker does once started
    run(args.per_day, args.days, args.sections, args.record, args.batch)


if __name__ == "__main__":
    main()
