"""Benchmark: how fast this host's cores are today, alone and with the other core busy.

    python -m bench.host [--runs 7]

The machine under the benchmarks is a virtual one, and the physical host under
it changes between sessions: session 7's host was ~25 % slower than session
6's on the same code, and on session 8's the aggregator took ~1.5x session 7's
CPU per update, again on the same code. Every figure in the README names its
session; run this beside a benchmark to tell a slower host from slower code.

It times one pure-Python workload (300,000 dict inserts of str keys, then
``json`` out and back: the interpreter, the allocator, memory), best and
median of ``--runs``, first with nothing else running, then while a second
process spins on the other core. A host whose two virtual cores share a
physical core, or whose physical cores are oversubscribed, slows the first
when the second is busy, and the benchmarks load both cores. On session 8's
host the runs themselves spread by 10-20 %: compare medians of several calls. The kernel's
steal time (``/proc/stat``) over the runs is printed too; a hypervisor that
does not report it prints 0.

Prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path


def workload() -> int:
    table: dict[str, int] = {}
    for i in range(300_000):
        table[str(i)] = i * i
    return len(json.loads(json.dumps(table)))


def timings(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        workload()
        out.append(time.perf_counter() - started)
    return out


def _spin(stop: float) -> None:
    while time.monotonic() < stop:
        pass


def _steal() -> int:
    # cpu  user nice system idle iowait irq softirq steal ...
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) if len(fields) > 8 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    workload()  # warm: imports, the allocator's arenas
    steal0 = _steal()
    alone = timings(args.runs)
    spinner = mp.get_context("spawn").Process(
        target=_spin, args=(time.monotonic() + 600,), daemon=True
    )
    spinner.start()
    try:
        time.sleep(0.5)  # the spinner is up
        busy = timings(args.runs)
    finally:
        spinner.terminate()
        spinner.join()
    steal = _steal() - steal0
    ms = 1000
    a_best, a_med = min(alone) * ms, statistics.median(alone) * ms
    b_best, b_med = min(busy) * ms, statistics.median(busy) * ms
    print(f"workload alone:                  best {a_best:.0f} ms, median {a_med:.0f} ms")
    print(
        f"with the other core busy:        best {b_best:.0f} ms, median {b_med:.0f} ms "
        f"({b_med / a_med - 1:+.0%} on the median)"
    )
    print(f"steal time over the runs: {steal} ticks")


if __name__ == "__main__":
    main()
