"""Ingest's producer partitions with a remembered key hash: always the partition
aiokafka's default partitioner (and so the aggregator's co-partitioning) picks."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from services.common.kafka import KeyHashPartitioner, partition_for

keys = st.binary(min_size=0, max_size=40)
partition_lists = st.integers(min_value=1, max_value=64).map(lambda n: list(range(n)))


@given(st.lists(st.tuples(keys, partition_lists), min_size=1, max_size=30))
def test_the_partition_is_the_default_partitioners(calls: list[tuple[bytes, list[int]]]) -> None:
    remembered = KeyHashPartitioner(max_keys=8)  # small: the bound is crossed too
    default = DefaultPartitioner()

    for key, partitions in calls:
        expected = default(key, partitions, partitions)
        assert remembered(key, partitions, partitions) == expected
        assert expected == partition_for(key, len(partitions))


def test_a_key_of_none_gets_an_available_partition() -> None:
    assert KeyHashPartitioner()(None, [0, 1, 2], [1]) == 1
