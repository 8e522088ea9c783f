"""Input cursors: a record the consumer skipped is sought back to, never lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.cursor import Decision, InputCursors


def test_in_order_records_are_counted() -> None:
    cursors = InputCursors()
    cursors.start(0, 10)
    assert [cursors.decide(0, o, 0.0) for o in (10, 11, 12)] == [Decision.COUNT] * 3
    assert cursors.expected(0) == 13


def test_earlier_records_are_replays() -> None:
    cursors = InputCursors()
    cursors.start(3, 10)
    assert cursors.decide(3, 7, 0.0) is Decision.REPLAY
    assert cursors.expected(3) == 10


def test_a_gap_rewinds_once_then_drops_stale_records_until_the_expected_one() -> None:
    cursors = InputCursors(retry_after=2.0)
    cursors.start(1, 10)
    assert cursors.decide(1, 11, 0.0) is Decision.REWIND  # 10 was never delivered
    assert cursors.decide(1, 12, 0.5) is Decision.STALE  # fetched before the seek
    assert cursors.decide(1, 10, 0.6) is Decision.COUNT  # the seek took effect
    assert cursors.decide(1, 11, 0.6) is Decision.COUNT
    assert cursors.decide(1, 13, 0.7) is Decision.REWIND  # a new gap: 12 missing


def test_a_lost_seek_is_retried() -> None:
    cursors = InputCursors(retry_after=2.0)
    cursors.start(0, 5)
    assert cursors.decide(0, 9, 0.0) is Decision.REWIND
    assert cursors.decide(0, 10, 1.9) is Decision.STALE
    assert cursors.decide(0, 11, 2.1) is Decision.REWIND


def test_a_skipped_last_record_is_found_once_the_partition_is_quiet() -> None:
    cursors = InputCursors(retry_after=2.0)
    cursors.start(0, 5)
    assert cursors.decide(0, 5, 10.0) is Decision.COUNT  # then 6 is skipped, nothing after
    assert not cursors.lagging(0, 7, 11.0)  # maybe still on its way
    assert cursors.lagging(0, 7, 12.5)  # quiet for 2 s while 6 exists: seek back
    assert not cursors.lagging(0, 7, 13.0)  # give the seek time
    assert not cursors.lagging(0, 6, 20.0)  # nothing beyond what was counted
    assert not cursors.lagging(4, 100, 20.0)  # a partition not tracked


def test_reset_forgets_every_partition() -> None:
    cursors = InputCursors()
    cursors.start(0, 1)
    cursors.reset()
    assert not cursors.knows(0)


@given(
    start=st.integers(0, 50),
    length=st.integers(1, 60),
    drops=st.sets(st.integers(0, 59)),
)
def test_every_record_is_counted_once_whatever_the_consumer_skips(
    start: int, length: int, drops: set[int]
) -> None:
    """A consumer that may skip any record (once) and replays from wherever it
    is sought to: the records counted are exactly start..end, in order, once."""
    cursors = InputCursors(retry_after=0.0)
    cursors.start(0, start)
    end = start + length
    counted: list[int] = []
    skip_once = {start + d for d in drops if d < length}
    position, now, steps = start, 0.0, 0
    while True:
        steps += 1
        assert steps < 10 * length + 100, "no progress"
        if position >= end:  # the consumer is at the end: the timer's check
            now += 1.0
            if not cursors.lagging(0, end, now):
                break
            position = cursors.expected(0)
            continue
        offset = position
        position += 1
        if offset in skip_once:
            skip_once.discard(offset)
            continue
        decision = cursors.decide(0, offset, now)
        now += 1.0
        if decision is Decision.COUNT:
            counted.append(offset)
        elif decision is Decision.REWIND:
            position = cursors.expected(0)
    assert counted == list(range(start, end))
