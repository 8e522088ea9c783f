"""Event-time window arithmetic: hourly buckets and rolling 1 h / 24 h / 7 d sums."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.models import KINDS
from services.aggregator import windows
from services.aggregator.windows import DAY, HOUR
from tests.unit.factories import NOW

WEEK = 7 * DAY
CURRENT = windows.bucket_start(NOW, HOUR)  # 12:00 on the test day


def _buckets(*events: tuple[str, float, int]) -> windows.Buckets:
    buckets: windows.Buckets = {}
    for kind, ts, count in events:
        windows.add(buckets, kind, ts, count, HOUR)
    return buckets


def _crossings(buckets: windows.Buckets, window: int, now: float = NOW) -> int:
    return windows.window_sum(buckets, now, window, HOUR)["crossing_attempt"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h", 3600), ("24h", 86_400), ("7d", 604_800), (" 2h ", 7200)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert windows.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0h", "-1h", "1w", "h", "24", "1.5h", "", "24 h", "1H"])
def test_parse_duration_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="expected a positive duration like 90s, 5m, 24h or 7d"):
        windows.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(90, "90s"), (300, "5m"), (3600, "1h"), (86_400, "1d"), (5400, "90m")]
)
def test_format_duration_round_trips(seconds: int, text: str) -> None:
    assert windows.format_duration(seconds) == text
    assert windows.parse_duration(text) == seconds


def test_bucket_start() -> None:
    assert windows.bucket_start(CURRENT, HOUR) == CURRENT
    assert windows.bucket_start(CURRENT + 3599.999, HOUR) == CURRENT
    assert windows.bucket_start(CURRENT + 3600, HOUR) == CURRENT + HOUR
    assert windows.bucket_start(CURRENT - 0.001, HOUR) == CURRENT - HOUR
    assert windows.bucket_start(CURRENT + 1799, 1800) == CURRENT
    assert windows.bucket_start(CURRENT + 1800, 1800) == CURRENT + 1800
    assert CURRENT % HOUR == 0 and CURRENT <= NOW < CURRENT + HOUR


def test_add_counts_into_the_bucket_of_the_event_time() -> None:
    buckets = _buckets(
        ("crossing_attempt", NOW, 3),
        ("crossing_attempt", CURRENT, 2),
        ("detection", CURRENT + 3599, 1),
        ("crossing_attempt", CURRENT - 1, 7),
    )

    assert buckets == {
        CURRENT: {"crossing_attempt": 5, "detection": 1},
        CURRENT - HOUR: {"crossing_attempt": 7},
    }


def test_window_sum_reports_every_kind() -> None:
    totals = windows.window_sum({}, NOW, DAY, HOUR)

    assert totals == dict.fromkeys(KINDS, 0)


@pytest.mark.parametrize(
    ("window", "oldest_in"),
    [(HOUR, CURRENT), (DAY, CURRENT - 23 * HOUR), (WEEK, CURRENT - 167 * HOUR)],
)
def test_window_boundaries(window: int, oldest_in: int) -> None:
    # The window is the current bucket and the (W / 1 h) - 1 before it.
    just_out = oldest_in - HOUR
    buckets = _buckets(
        ("crossing_attempt", oldest_in, 1),  # first second of the oldest bucket in
        ("crossing_attempt", just_out + HOUR - 1, 10),  # last second of the bucket before
        ("crossing_attempt", just_out, 100),
    )

    assert _crossings(buckets, window) == 1


def test_event_exactly_24h_before_the_current_bucket_start_is_out() -> None:
    buckets = _buckets(("crossing_attempt", CURRENT - DAY, 5), ("crossing_attempt", NOW, 1))

    assert _crossings(buckets, DAY) == 1
    assert _crossings(buckets, WEEK) == 6


def test_current_hour_is_in_from_its_first_second() -> None:
    buckets = _buckets(("crossing_attempt", CURRENT, 4))

    assert _crossings(buckets, HOUR, now=CURRENT) == 4
    assert _crossings(buckets, HOUR, now=CURRENT + HOUR - 1) == 4
    assert _crossings(buckets, HOUR, now=CURRENT + HOUR) == 0
    assert _crossings(buckets, DAY, now=CURRENT + HOUR) == 4


def test_future_buckets_count_in_every_window() -> None:
    # A sender's clock a few minutes ahead puts its event in the next bucket.
    buckets = _buckets(("crossing_attempt", CURRENT + HOUR + 60, 2))

    assert _crossings(buckets, HOUR) == 2
    assert _crossings(buckets, DAY) == 2
    assert _crossings(buckets, WEEK) == 2


def test_windows_only_move_with_now() -> None:
    buckets = _buckets(("crossing_attempt", NOW - 2 * HOUR, 9))

    assert _crossings(buckets, DAY, now=NOW) == 9
    assert _crossings(buckets, DAY, now=NOW + 21 * HOUR) == 9
    assert _crossings(buckets, DAY, now=NOW + 22 * HOUR) == 0


def test_kinds_sum() -> None:
    counts = {"crossing_attempt": 3, "detection": 4, "incident": 1}

    assert windows.kinds_sum(counts, ["crossing_attempt", "detection"]) == 7
    assert windows.kinds_sum(counts, ["humanitarian"]) == 0


def test_series_has_24_hourly_points_oldest_first_ending_with_the_current_hour() -> None:
    buckets = _buckets(
        ("crossing_attempt", NOW, 1),
        ("detection", CURRENT - 5 * HOUR, 2),
        ("crossing_attempt", CURRENT - 23 * HOUR, 3),
        ("crossing_attempt", CURRENT - 24 * HOUR, 100),  # outside the series
    )

    points = windows.series(buckets, NOW, 24, HOUR)

    starts = [start for start, _ in points]
    assert len(points) == 24
    assert starts == [CURRENT - i * HOUR for i in range(23, -1, -1)]
    assert points[0][1]["crossing_attempt"] == 3
    assert points[18][1]["detection"] == 2
    assert points[-1][1]["crossing_attempt"] == 1
    assert all(set(counts) == set(KINDS) for _, counts in points)
    assert sum(points[5][1].values()) == 0  # empty hours are present, with zeros


def test_series_sums_equal_the_24h_window_future_buckets_included() -> None:
    buckets = _buckets(
        ("crossing_attempt", NOW, 1),
        ("incident", CURRENT - 10 * HOUR, 2),
        ("crossing_attempt", CURRENT + HOUR + 30, 4),  # future: folded into the last point
        ("detection", CURRENT - 30 * HOUR, 8),
    )

    points = windows.series(buckets, NOW, 24, HOUR)

    summed = {k: sum(counts[k] for _, counts in points) for k in KINDS}
    assert summed == windows.window_sum(buckets, NOW, DAY, HOUR)
    assert points[-1][1]["crossing_attempt"] == 5
    assert buckets[CURRENT + HOUR] == {"crossing_attempt": 4}  # the input is not changed


def test_expire_drops_only_buckets_no_window_can_reach() -> None:
    buckets = _buckets(
        ("crossing_attempt", CURRENT - WEEK + HOUR, 1),  # oldest bucket of the 7 d window
        ("crossing_attempt", CURRENT - WEEK, 2),
        ("detection", CURRENT - 30 * DAY, 3),
        ("crossing_attempt", NOW, 4),
    )
    before = windows.window_sum(buckets, NOW, WEEK, HOUR)

    dropped = windows.expire(buckets, NOW, WEEK, HOUR)

    assert dropped == 2
    assert sorted(buckets) == [CURRENT - WEEK + HOUR, CURRENT]
    assert windows.window_sum(buckets, NOW, WEEK, HOUR) == before
    assert windows.expire(buckets, NOW, WEEK, HOUR) == 0


# --- properties ---------------------------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.floats(min_value=NOW - 8 * DAY, max_value=NOW + 600, allow_nan=False),
        st.integers(min_value=1, max_value=10_000),
    ),
    max_size=60,
)


def _brute_force(events: list[tuple[str, float, int]], window: int) -> dict[str, int]:
    """The documented definition, event by event: an event is in the window when
    its bucket starts at or after bucket_start(now) - W + bucket."""
    lowest = (int(NOW // HOUR) * HOUR) - window + HOUR
    totals = dict.fromkeys(KINDS, 0)
    for kind, ts, count in events:
        if int(ts // HOUR) * HOUR >= lowest:
            totals[kind] += count
    return totals


@settings(max_examples=200, deadline=None)
@given(events=EVENTS, seed=st.randoms(use_true_random=False))
def test_window_sum_equals_a_brute_force_recount(
    events: list[tuple[str, float, int]], seed: random.Random
) -> None:
    seed.shuffle(events)
    buckets = _buckets(*events)

    for window in (HOUR, DAY, WEEK):
        assert windows.window_sum(buckets, NOW, window, HOUR) == _brute_force(events, window)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS)
def test_series_and_expire_agree_with_the_windows(events: list[tuple[str, float, int]]) -> None:
    buckets = _buckets(*events)
    day = windows.window_sum(buckets, NOW, DAY, HOUR)

    points = windows.series(buckets, NOW, 24, HOUR)
    windows.expire(buckets, NOW, WEEK, HOUR)

    assert {k: sum(c[k] for _, c in points) for k in KINDS} == day
    assert windows.window_sum(buckets, NOW, WEEK, HOUR) == _brute_force(events, WEEK)
    assert windows.window_sum(buckets, NOW, DAY, HOUR) == day


# Steps for the indexed buckets: add an event, or expire with the clock moved on.
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from(KINDS),
            st.floats(min_value=NOW - 9 * DAY, max_value=NOW + 2 * HOUR, allow_nan=False),
            st.integers(min_value=1, max_value=10_000),
        ),
        st.tuples(st.just("expire"), st.floats(min_value=0, max_value=3 * DAY)),
    ),
    max_size=80,
)


def _visible(counts: dict[str, int]) -> dict[str, int]:
    # A Held sum may show a kind outside the contract with a zero count.
    return {k: n for k, n in counts.items() if n or k in KINDS}


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, bucket=st.sampled_from([60, 900, HOUR]))
def test_held_buckets_sum_series_and_expire_as_the_plain_dict(
    steps: list[tuple[object, ...]], bucket: int
) -> None:
    """The index (starts in order, totals per kind) never changes an answer: after
    any mix of adds (any order) and expiries, every window, the series and the
    buckets themselves are those of a plain dict given the same steps."""
    held, plain = windows.Held(), {}
    now = NOW
    for step in steps:
        if step[0] == "add":
            _, kind, ts, count = step
            held.add(windows.bucket_start(ts, bucket), kind, count)  # type: ignore[arg-type]
            windows.add(plain, kind, ts, count, bucket)  # type: ignore[arg-type]
        else:
            now += step[1]  # type: ignore[operator]
            assert windows.expire(held, now, WEEK, bucket) == windows.expire(
                plain, now, WEEK, bucket
            )
        assert held == plain
        assert held.starts == sorted(plain)
        # Sums between steps make cumulative sums that later adds must drop.
        window = (HOUR, DAY, WEEK)[len(held) % 3]
        assert _visible(windows.window_sum(held, now, window, bucket)) == windows.window_sum(
            plain, now, window, bucket
        )
    for window in (bucket, HOUR, 6 * HOUR, DAY, DAY + HOUR, WEEK, WEEK + 2 * HOUR, 30 * DAY):
        assert _visible(windows.window_sum(held, now, window, bucket)) == windows.window_sum(
            plain, now, window, bucket
        )
    assert windows.series(held, now, 24, bucket, step_seconds=HOUR) == windows.series(
        plain, now, 24, bucket, step_seconds=HOUR
    )
    rebuilt = windows.Held(plain)
    assert rebuilt == held and rebuilt.starts == held.starts
    assert {k: n for k, n in rebuilt.totals.items() if n} == {
        k: n for k, n in held.totals.items() if n
    }
