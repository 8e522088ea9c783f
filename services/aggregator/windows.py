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
from bisect import bisect_left, bisect_right, insort
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


class Held(dict[int, dict[str, int]]):
    """Buckets (a plain :data:`Buckets` dict to every reader) with an index that
    makes a rolling window's sum cost the same whatever the window holds.

    A full 7-day window holds 170 hourly buckets. Summing them for each window a
    refresh asks for (1 h, 6 h, 24 h, 25 h, 7 d) made a section's refresh cost
    grow as its window filled: 3.6x from 0.2 M to 5 M events held (issue 10,
    point 4). The index keeps the bucket starts in order, the totals per kind
    over every bucket held, and cumulative sums up to each bucket, so a window
    is the totals minus the cumulative sum just below it: a few dict operations.

    The cumulative sums are made when a window first needs them. An event added
    to a bucket whose sum is already made drops the sums from that bucket on
    (:meth:`stale`); live traffic adds to the newest bucket, whose sum no window
    below the current hour needs, so it rarely drops any.

    Change it only through :meth:`add` (or :meth:`bucket`, :meth:`stale` and
    :attr:`totals` together, as ``Engine.apply_record`` does inline) and
    :meth:`expire`. ``Held(buckets)`` builds the index from a plain dict.
    """

    __slots__ = ("_base", "_cum", "made_to", "starts", "totals")

    def __init__(self, buckets: Mapping[int, Mapping[str, int]] | None = None) -> None:
        super().__init__()
        self.starts: list[int] = []
        self.totals: dict[str, int] = {}
        # _cum[j]: the counts of every bucket up to starts[j], expired ones included
        # (_base: the expired ones); made for the first len(_cum) starts.
        self._cum: list[dict[str, int]] = []
        self._base: dict[str, int] = {}
        #: the start of the last bucket whose cumulative sum is made (-1: none)
        self.made_to = -1
        for start, per_kind in sorted((buckets or {}).items()):
            for kind, n in per_kind.items():
                self.add(start, kind, n)

    def bucket(self, start: int) -> dict[str, int]:
        """The counts of the bucket at ``start``, made (and indexed) if new."""
        per_kind = self.get(start)
        if per_kind is None:
            per_kind = self[start] = {}
            starts = self.starts
            if not starts or start > starts[-1]:
                starts.append(start)  # live traffic: the newest bucket
            else:
                self.stale(start)
                insort(starts, start)
        return per_kind

    def stale(self, start: int) -> None:
        """The counts of the bucket at ``start`` change: drop the cumulative sums
        from it on (call it when ``start <= made_to``)."""
        if start <= self.made_to:
            del self._cum[bisect_left(self.starts, start) :]
            self.made_to = self.starts[len(self._cum) - 1] if self._cum else -1

    def add(self, start: int, kind: str, count: int) -> None:
        per_kind = self.bucket(start)
        self.stale(start)
        per_kind[kind] = per_kind.get(kind, 0) + count
        totals = self.totals
        totals[kind] = totals.get(kind, 0) + count

    def _below(self, cut: int) -> dict[str, int]:
        """The counts of the first ``cut`` buckets held, as cumulative minus base."""
        cum, starts = self._cum, self.starts
        for j in range(len(cum), cut):
            running = dict(cum[-1]) if cum else dict(self._base)
            for kind, n in self[starts[j]].items():
                running[kind] = running.get(kind, 0) + n
            cum.append(running)
        if cum:
            self.made_to = starts[len(cum) - 1]
        return cum[cut - 1] if cut else self._base

    def expire(self, lowest: int) -> int:
        """Drop the buckets that start before ``lowest``; returns how many went."""
        starts, totals = self.starts, self.totals
        cut = bisect_left(starts, lowest)
        if not cut:
            return 0
        self._base = dict(self._below(cut))
        for start in starts[:cut]:
            for kind, n in self.pop(start).items():
                totals[kind] -= n
        del starts[:cut]
        del self._cum[:cut]
        if not self._cum:
            self.made_to = -1
        return cut

    def window_sum(self, lowest: int) -> dict[str, int]:
        """Counts per kind over the buckets from ``lowest`` on. Equal to
        :func:`window_sum`'s except that a kind outside the contract may show
        with a zero count."""
        cut = bisect_left(self.starts, lowest)
        out = empty_counts()
        out.update(self.totals)
        if cut:
            base = self._base
            for kind, n in self._below(cut).items():
                out[kind] -= n - base.get(kind, 0)
        return out

    def since(self, first: int) -> Iterable[int]:
        """The starts from ``first`` on, in order."""
        starts = self.starts
        return starts[bisect_left(starts, first) :]


def window_sum(
    buckets: Buckets, now: float, window_seconds: int, bucket_seconds: int
) -> dict[str, int]:
    """Counts per kind over the rolling window of ``window_seconds`` ending at ``now``."""
    lowest = bucket_start(now, bucket_seconds) - window_seconds + bucket_seconds
    if isinstance(buckets, Held):
        return buckets.window_sum(lowest)
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
    if step == bucket_seconds and isinstance(buckets, Held):
        return _series_of_buckets(buckets, first, current, points, step)
    out = [(first + i * step, empty_counts()) for i in range(points)]
    last = points - 1
    if isinstance(buckets, Held):
        inside: Iterable[tuple[int, dict[str, int]]] = (
            (s, buckets[s]) for s in buckets.since(first)
        )
    else:
        inside = buckets.items()
    for start, per_kind in inside:
        if start < first:
            continue  # most of a 7-day window: skipped before any arithmetic
        index = (start - start % step - first) // step
        if index > last:
            index = last
        counts = out[index][1]
        for kind, n in per_kind.items():
            counts[kind] = counts.get(kind, 0) + n
    return out


def _series_of_buckets(
    buckets: Held, first: int, current: int, points: int, step: int
) -> list[tuple[int, dict[str, int]]]:
    """:func:`series` with one bucket a step: each point a copy of its bucket (a
    section's published state asks for its 24 hours on every refresh)."""
    get = buckets.get
    out = []
    for start in range(first, current + step, step):
        counts = empty_counts()
        per_kind = get(start)
        if per_kind:
            counts.update(per_kind)
        out.append((start, counts))
    starts = buckets.starts
    if starts and starts[-1] > current:  # future buckets fold into the current step
        counts = out[-1][1]
        for start in starts[bisect_right(starts, current) :]:
            for kind, n in buckets[start].items():
                counts[kind] = counts.get(kind, 0) + n
    return out


def expire(buckets: Buckets, now: float, keep_seconds: int, bucket_seconds: int) -> int:
    """Drop buckets that no window can reach any more; returns how many went."""
    lowest = bucket_start(now, bucket_seconds) - keep_seconds + bucket_seconds
    if isinstance(buckets, Held):
        return buckets.expire(lowest)
    old = [start for start in buckets if start < lowest]
    for start in old:
        del buckets[start]
    return len(old)
