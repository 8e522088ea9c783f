"""bench.aggregator's figures of one fill slice (``slice_figures``)."""

from __future__ import annotations

import pytest

from bench.aggregator import Reading, slice_figures


def test_a_slice_gives_its_rate_cost_and_what_the_host_did_meanwhile() -> None:
    first = Reading(at=10.0, rss_mib=250.0, worker_cpu=3.0, machine_busy=100.0, steal=7.0)
    last = Reading(at=14.0, rss_mib=260.0, worker_cpu=7.0, machine_busy=105.0, steal=7.6)
    f = slice_figures(first, last, 1_000_000)
    assert f is not None
    assert f["ev_per_s"] == pytest.approx(250_000)
    assert f["rss_mib"] == 250.0  # at the mark, where the slice starts
    assert f["worker_cpu_us_per_event"] == pytest.approx(4.0)
    # the machine was busy 5 s, the worker 4 of them, over 4 s: 25 % of one CPU
    assert f["rest_of_machine_pct"] == pytest.approx(25.0)
    assert f["steal_pct"] == pytest.approx(15.0)


def test_the_rest_of_the_machine_is_never_negative() -> None:
    # The worker's and the machine's counters are read a moment apart.
    first = Reading(at=0.0, rss_mib=1.0, worker_cpu=0.0, machine_busy=0.0, steal=0.0)
    last = Reading(at=1.0, rss_mib=1.0, worker_cpu=1.0, machine_busy=0.99, steal=0.0)
    f = slice_figures(first, last, 10)
    assert f is not None and f["rest_of_machine_pct"] == 0.0


def test_a_slice_one_poll_saw_whole_has_no_figures() -> None:
    r = Reading(at=5.0, rss_mib=1.0, worker_cpu=1.0, machine_busy=1.0, steal=0.0)
    assert slice_figures(r, r, 1000) is None
