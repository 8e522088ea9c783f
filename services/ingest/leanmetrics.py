"""Counters and histograms for the per-request path, exposed as prometheus-client's.

prometheus-client's Counter and Histogram take a lock for every increment (a
histogram two: its sum and its bucket) and check on every call that they may
be observed; a single-event ingest request updates four of them. These keep
plain floats instead, updated only from the event loop's thread, and hand
Prometheus the same families at scrape time: ``tests/unit/ingest/
test_leanmetrics.py`` compares their exposition with prometheus-client's, byte
for byte. Not for anything updated from other threads.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class _Labelled(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        if registry is not None:
            registry.register(self)

    def _key(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        return tuple(str(v) for v in values)


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class LeanCounter(_Labelled):
    """``prometheus_client.Counter(name, documentation, labelnames)``, lock-free."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._children: dict[tuple[str, ...], CounterChild] = {}
        if not labelnames:
            self._children[()] = CounterChild()
        super().__init__(name, documentation, labelnames, registry)

    def labels(self, *values: str) -> CounterChild:
        key = self._key(values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = CounterChild()
        return child

    def inc(self, amount: float = 1) -> None:
        self._children[()].inc(amount)

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        # The first bucket whose upper bound is >= amount, as prometheus-client picks
        # (NaN fits none, there as here).
        i = bisect.bisect_left(self._bounds, amount)
        if i < len(self.counts) and amount <= self._bounds[i]:
            self.counts[i] += 1


class LeanHistogram(_Labelled):
    """``prometheus_client.Histogram(name, documentation, labelnames, buckets=...)``,
    lock-free."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        if len(bounds) < 2:
            raise ValueError("Must have at least two buckets")
        if bounds[0] < 0:  # prometheus-client then leaves _sum out; not needed here
            raise ValueError("Negative buckets are not supported")
        self._bounds = bounds
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        if not labelnames:
            self._children[()] = HistogramChild(bounds)
        super().__init__(name, documentation, labelnames, registry)

    def labels(self, *values: str) -> HistogramChild:
        key = self._key(values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HistogramChild(self._bounds)
        return child

    def observe(self, amount: float) -> None:
        self._children[()].observe(amount)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        les = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        for values, child in list(self._children.items()):
            buckets = []
            acc = 0.0
            for le, n in zip(les, child.counts, strict=True):
                acc += n
                buckets.append((le, acc))
            family.add_metric(values, buckets, child.sum)
        yield family
