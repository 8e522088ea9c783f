"""Changelog records a fetch returned but Faust did not deliver are fetched again.

The end-to-end case (a hand-over whose survivor waited forever for a changelog
partition) is the two-worker tests in tests/integration; these pin the two
pieces: which offset each partition goes back to, and that only a partition
whose position is past it moves (aiokafka's own subscription state).
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.bulk import _rewind, undelivered


class Record(NamedTuple):
    offset: int


@st.composite
def fetches(draw: Any) -> tuple[dict[int, list[Record]], dict[int, int], dict[int, int]]:
    """A fetch per partition, the prefix of it handed on, and the expected answer."""
    records: dict[int, list[Record]] = {}
    delivered: dict[int, int] = {}
    expected: dict[int, int] = {}
    for tp in range(draw(st.integers(0, 5))):
        offsets = sorted(draw(st.sets(st.integers(0, 10_000), max_size=20)))
        records[tp] = [Record(o) for o in offsets]
        handed_on = draw(st.integers(0, len(offsets)))
        if handed_on:
            delivered[tp] = offsets[handed_on - 1]
        if handed_on < len(offsets):
            expected[tp] = offsets[handed_on]
    return records, delivered, expected


@given(fetches())
def test_each_partition_goes_back_to_its_first_record_not_handed_on(
    case: tuple[dict[int, list[Record]], dict[int, int], dict[int, int]],
) -> None:
    records, delivered, expected = case
    assert undelivered(records, delivered) == expected


def test_a_fetch_dropped_whole_goes_back_to_its_first_record() -> None:
    # Flow stopped while the fetch waited: nothing of it was handed on.
    assert undelivered({"c3": [Record(0), Record(1)], "c4": []}, {}) == {"c3": 0}


class _Consumer:
    """The two things _rewind uses of an AIOKafkaConsumer: its subscription state
    (aiokafka's own) and seek (which, in aiokafka, sets the position there)."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self._subscription = SubscriptionState()
        self._subscription.subscribe({tp.topic for tp in assigned})
        self._subscription.assign_from_subscribed(assigned)
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._subscription.seek(tp, offset)

    def position(self, tp: TopicPartition) -> int:
        return int(self._subscription.subscription.assignment.state_value(tp).position)


def test_only_a_partition_past_the_offset_moves_back() -> None:
    async def run() -> None:
        past, behind, unplaced = (TopicPartition("c", p) for p in range(3))
        consumer = _Consumer({past, behind, unplaced})
        consumer._subscription.seek(past, 105)  # consumed through the dropped records
        consumer._subscription.seek(behind, 3)  # sought earlier since: that stands
        gone = TopicPartition("c", 9)  # revoked meanwhile
        moved = await _rewind(consumer, {past: 0, behind: 10, unplaced: 7, gone: 1})
        assert moved == [(past, 105, 0)]
        assert consumer.seeks == [(past, 0)]
        assert (consumer.position(past), consumer.position(behind)) == (0, 3)

    asyncio.run(run())
