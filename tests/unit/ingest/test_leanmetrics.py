"""Ingest's lock-free counters and histograms expose exactly what prometheus-client's do."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

import services.common.http  # noqa: F401  # as in every service: no _created series
from services.ingest.leanmetrics import LeanCounter, LeanHistogram

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
amounts = st.one_of(
    st.floats(min_value=0, max_value=20, allow_nan=False),
    st.sampled_from([0.0, *BUCKETS, math.inf, math.nan, -1.0]),
)
labels = st.tuples(st.sampled_from(["/v1/field-events", "other"]), st.sampled_from(["202", "5"]))


@given(st.lists(st.tuples(labels, amounts), max_size=40))
def test_a_histogram_exposes_what_prometheus_clients_would(
    observations: list[tuple[tuple[str, str], float]],
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram(
        "x_seconds", "How long", ["route", "status"], buckets=BUCKETS, registry=theirs
    )
    lean = LeanHistogram("x_seconds", "How long", ["route", "status"], BUCKETS, registry=ours)

    for values, amount in observations:
        reference.labels(*values).observe(amount)
        lean.labels(*values).observe(amount)

    assert generate_latest(ours) == generate_latest(theirs)


@given(st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), max_size=20))
def test_an_unlabelled_histogram_too(observations: list[float]) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("y_seconds", "Until acked", buckets=(0.002, 1), registry=theirs)
    lean = LeanHistogram("y_seconds", "Until acked", buckets=(0.002, 1), registry=ours)

    for amount in observations:
        reference.observe(amount)
        lean.observe(amount)

    assert generate_latest(ours) == generate_latest(theirs)


@given(st.lists(st.tuples(st.sampled_from(["detection", "incident"]), st.integers(0, 5))))
def test_a_counter_exposes_what_prometheus_clients_would(incs: list[tuple[str, int]]) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Counter("z_events_accepted_total", "Accepted", ["kind"], registry=theirs)
    lean = LeanCounter("z_events_accepted_total", "Accepted", ["kind"], registry=ours)
    for metric in (reference, lean):
        metric.labels("sighting")  # a series from the start, at 0

    for kind, n in incs:
        reference.labels(kind).inc(n)
        lean.labels(kind).inc(n)

    assert generate_latest(ours) == generate_latest(theirs)
    assert ours.get_sample_value("z_events_accepted_total", {"kind": "sighting"}) == 0


def test_misuse_is_refused_as_there() -> None:
    registry = CollectorRegistry()
    counter = LeanCounter("c_total", "C", ["kind"], registry=registry)
    with pytest.raises(ValueError):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError):
        counter.labels("a", "b")
    with pytest.raises(ValueError):
        LeanHistogram("h", "H", buckets=(2, 1), registry=registry)
    with pytest.raises(ValueError):  # the same name twice in one registry
        LeanCounter("c_total", "C again", registry=registry)
