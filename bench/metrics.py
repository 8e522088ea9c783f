"""Benchmark: what one scrape of the aggregator's domain metrics costs.

    python -m bench.metrics [--sections 18] [--scrapes 200]

Builds ``--sections`` section snapshots (the catalogue's sections, repeated
under new ids when asked for more), registers the collectors of
``services/aggregator/metrics.py`` in their own registry and times
``generate_latest`` (what ``/metrics`` returns). The worker's event loop runs
a scrape inline, so this is how long a scrape holds counting back. Prints
figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from schemas.models import KINDS
from services.aggregator.metrics import InputLagCollector, SectionCollector, SectionSnapshot
from services.common.catalogue import Catalogue

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", type=int, default=18)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    catalogue = Catalogue.load(ROOT / "deploy" / "config" / "sections.yaml")
    base = list(catalogue.values())
    sections = [base[i % len(base)] for i in range(args.sections)]
    if args.sections > len(base):
        catalogue = Catalogue(
            [s.model_copy(update={"id": f"{s.country}-S{i:04d}"}) for i, s in enumerate(sections)]
        )
        sections = list(catalogue.values())
    now = time.time()
    snaps = [
        SectionSnapshot(
            section_id=s.id,
            country=s.country,
            counts={w: {k: i + j for j, k in enumerate(KINDS)} for w in ("1h", "24h", "7d")},
            level="medium" if i % 3 else "low",
            firing=(("crossings-24h", "medium"),) if i % 3 else (),
            last_event_at=now - i,
        )
        for i, s in enumerate(sections)
    ]
    rules = ["crossings-24h", "crossings-1h", "incidents-24h", "crossings-surge"]
    registry = CollectorRegistry()
    registry.register(SectionCollector(lambda: snaps, catalogue, rules))
    registry.register(
        InputLagCollector("bw.field-events", lambda: [(p, 1000, 990) for p in range(6)])
    )
    times = []
    size = 0
    for _ in range(args.scrapes):
        started = time.perf_counter()
        size = len(generate_latest(registry))
        times.append(time.perf_counter() - started)
    times.sort()
    print(
        f"{args.sections} sections, {args.scrapes} scrapes: median "
        f"{statistics.median(times) * 1000:.2f} ms, p99 {times[int(len(times) * 0.99) - 1] * 1000:.2f} ms, "
        f"{size:,} bytes per scrape"
    )


if __name__ == "__main__":
    main()
