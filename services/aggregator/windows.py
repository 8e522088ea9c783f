"""Event-time window arithmetic, with no Faust import.

Counts live in fixed buckets (1 hour by default) keyed by the bucket's start
in epoch seconds. A rolling window of W seconds ending at ``now`` is the sum of
the buckets whose start lies in ``(bucket_start(now) - W, ...]``: for W = 24 h
that is the current hour and the 23 before it. Future buckets (events up to a
few minutes ahead of the clock) count in every window that contains ``now``.

Faust's own windowed tables are avoided on purpose (see ARCHITECTURE.md,
"Windows"): these functions are the whole arithmetic, tested on their own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from schemas.models import KINDS

HOUR = 3600
DAY = 24 * HOUR

Buckets = dict[int, dict[str, int]]

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": HOUR, "d": DAY}


@functools.lru_cache(maxsize=1024)  # rules ask for their windows on every refresh
def parse_duration(text: str) -> int:
    """``"90s"``, ``"5m"``, ``"24h"``, ``"7d"`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"expected a positive duration like 90s, 5m, 24h or 7d, got {text!r}")
    return int(match.group(1)) * _UNIT[match.group(2)]


def format_duration(seconds: int) -> str:
    for unit, size in (("d", DAY), ("h", HOUR), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_duration(seconds: int) -> str:
    return format_duration(seconds).replace("d", " d").replace("h", " h").replace("m", " min")


def bucket_start(ts: float, bucket_seconds: int) -> int:
    return int(ts // bucket_seconds) * bucket_seconds


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


def add(buckets: Buckets, kind: str, ts: float, count: int, bucket_seconds: int) -> None:
    per_kind = buckets.setdefault(bucket_start(ts, bucket_seconds), {})
    per_kind[kind] = per_kind.get(kind, 0) + count


def window_sum(
    buckets: Buckets, now: float, window_seconds: int, bucket_seconds: int
) -> dict[str, int]:
    """Counts per kind over the rolling window of ``window_seconds`` ending at ``now``."""
    lowest = bucket_start(now, bucket_seconds) - window_seconds + bucket_seconds
    totals = empty_counts()
    for start, per_kind in buckets.items():
        if start >= lowest:
            for kind, n in per_kind.items():
                totals[kind] = totals.get(kind, 0) + n
    return totals


def kinds_sum(counts: Mapping[str, int], kinds: Iterable[str]) -> int:
    return sum(counts.get(k, 0) for k in kinds)


def series(
    buckets: Buckets,
    now: float,
    points: int,
    bucket_seconds: int,
    step_seconds: int | None = None,
) -> list[tuple[int, dict[str, int]]]:
    """The last ``points`` steps (default: one bucket each) ending with the current
    one, oldest first; empty steps are included with zero counts. Future buckets
    are folded into the current step, so with steps of one bucket the series sums
    to the same total as the window. Steps longer than a bucket (hourly points
    over minute buckets) sum the buckets that start inside them."""
    step = step_seconds or bucket_seconds
    current = bucket_start(now, step)
    first = current - (points - 1) * step
    out = [(first + i * step, empty_counts()) for i in range(points)]
    last = points - 1
    for start, per_kind in buckets.items():
        if start < first:
            continue  # most of a 7-day window: skipped before any arithmetic
        index = (start - start % step - first) // step
        if index > last:
            index = last
        counts = out[index][1]
        for kind, n in per_kind.items():
            counts[kind] = counts.get(kind, 0) + n
    return out


def expire(buckets: Buckets, now: float, keep_seconds: int, bucket_seconds: int) -> int:
    """Drop buckets that no window can reach any more; returns how many went."""
    lowest = bucket_start(now, bucket_seconds) - keep_seconds + bucket_seconds
    old = [start for start in buckets if start < lowest]
    for start in old:
        del buckets[start]
    return len(old)
