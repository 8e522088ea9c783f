"""Which input record the worker must count next, per partition (no Faust import).

The aggregates are the truth of what was counted: every record of an input
partition belongs to one section on that partition, and each section stores the
offset of the last record it counted there. After an assignment, the next
record to count on partition ``p`` is therefore one past the highest offset any
of its sections stores, whatever offsets the consumer group committed.

The consumer does not always deliver that record. Observed with
faust-streaming 0.15.3: after a SIGKILL take-over one record went missing right
after recovery (Faust resumes the input partitions and seeks them before it
resumes flow control, and resuming flow control empties the stream buffers; the
seek is not repeated). A committed offset ahead of the tables, which durable.py
prevents, would look the same. So each delivered offset is checked:

- the expected one: count it;
- lower: a replay; the sections' own offsets skip what they already counted;
- higher: records were never delivered; seek back to the expected offset and
  drop the rest of this partition's records until it arrives (``STALE``); if it
  has not come after ``retry_after`` seconds, seek again.

A skipped record with nothing after it yet is found by the wall-clock timer
instead: the partition's end offset is beyond the expected one and nothing was
delivered for ``retry_after`` seconds (:meth:`InputCursors.lagging`).

A gap that retention made (the expected record is no longer on the topic) is
accepted by the caller, which knows the partition's earliest offset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Decision(enum.Enum):
    COUNT = "count"  # the expected record: apply it
    REPLAY = "replay"  # an earlier record: apply it, the sections' offsets skip what they have
    REWIND = "rewind"  # records were skipped: seek back to ``expected`` and drop this one
    STALE = "stale"  # delivered before the seek back took effect: drop it


@dataclass
class _Partition:
    expected: int
    rewound_at: float | None = None  # when we last sought back to ``expected``
    rewinds: int = 0  # seeks back to ``expected`` so far
    delivered_at: float = float("-inf")  # when a record of this partition last arrived


class InputCursors:
    """Expected next offset per input partition; forget everything on a rebalance."""

    def __init__(self, retry_after: float = 2.0) -> None:
        self.retry_after = retry_after
        self._parts: dict[int, _Partition] = {}

    def reset(self) -> None:
        self._parts.clear()

    def knows(self, partition: int) -> bool:
        return partition in self._parts

    def start(self, partition: int, expected: int, now: float = float("-inf")) -> None:
        """Begin tracking ``partition``: the next record to count is ``expected``
        (``now``: give the consumer ``retry_after`` from here to deliver it)."""
        self._parts[partition] = _Partition(expected, delivered_at=now)

    def expected(self, partition: int) -> int:
        return self._parts[partition].expected

    def decide(self, partition: int, offset: int, now: float) -> Decision:
        part = self._parts[partition]
        part.delivered_at = now
        if offset == part.expected:
            part.expected += 1
            part.rewound_at = None
            part.rewinds = 0
            return Decision.COUNT
        if offset < part.expected:
            return Decision.REPLAY
        if part.rewound_at is not None and now - part.rewound_at < self.retry_after:
            return Decision.STALE
        part.rewound_at = now
        part.rewinds += 1
        return Decision.REWIND

    def rewinds(self, partition: int) -> int:
        """Seeks back to the current expected offset so far (more than one: is it
        still on the topic?)."""
        return self._parts[partition].rewinds

    def lagging(self, partition: int, end_offset: int, now: float) -> bool:
        """Whether to seek ``partition`` back to its expected offset: records up to
        ``end_offset`` (exclusive) exist, but nothing was delivered for a while."""
        part = self._parts.get(partition)
        if part is None or end_offset <= part.expected:
            return False
        quiet_since = max(part.delivered_at, part.rewound_at or float("-inf"))
        if now - quiet_since < self.retry_after:
            return False
        part.rewound_at = now
        part.rewinds += 1
        return True
