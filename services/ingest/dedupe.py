"""Idempotency at the door: which ids the broker already acknowledged, which are in flight.

A client that did not hear our answer posts the same events again. An id whose
records Kafka acknowledged is remembered (bounded, oldest first out, with a
TTL) and answered ``duplicate`` without producing it again. An id being
produced right now by another request is *in flight*: the later request waits
for that outcome (within its own deadline) instead of producing a second copy.
Only acknowledged ids are remembered, so a failed produce never turns into a
false ``duplicate``. The aggregator's dedupe by ``event_id`` remains the safety
net (a restart forgets this cache).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field


class Flight:
    """The new ids of one request while Kafka has not decided their fate.

    One per request, not one future per id: a batch of 10,000 events costs a
    counter, not 10,000 futures. Its future is made only when another request
    waits for it (most flights land with nobody waiting)."""

    __slots__ = ("_done", "failed", "remaining")

    def __init__(self) -> None:
        self.remaining = 0
        self.failed: set[str] = set()
        self._done: asyncio.Future[None] | None = None

    @property
    def done(self) -> asyncio.Future[None]:
        """Resolved once every id of the flight is settled."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            if self.remaining <= 0:
                self._done.set_result(None)
        return self._done

    def landed(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


@dataclass
class Claim:
    """How one request's ids split: positions into the keys it passed."""

    new: list[int] = field(default_factory=list)
    duplicate: list[int] = field(default_factory=list)
    waiting: list[tuple[int, Flight]] = field(default_factory=list)


class Idempotency:
    def __init__(
        self, max_size: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_size = max_size
        self._ttl = ttl
        self._clock = clock
        self._acked: OrderedDict[str, float] = OrderedDict()  # key -> when acknowledged
        self._pending: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._acked)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def is_acked(self, key: str) -> bool:
        return self._is_acked(key, self._clock())

    def _is_acked(self, key: str, now: float) -> bool:
        at = self._acked.get(key)
        if at is None:
            return False
        if now - at > self._ttl:
            del self._acked[key]
            return False
        return True

    def claim(self, keys: Sequence[str]) -> Claim:
        """Classify ``keys`` (in order) and mark the new ones in flight for the caller.

        A key repeated within ``keys`` is a duplicate of its first occurrence (it is
        produced once, with the first). The caller must :meth:`settle` every new key.
        """
        new: list[int] = []
        duplicate: list[int] = []
        waiting: list[tuple[int, Flight]] = []
        now = self._clock()
        pending = self._pending
        acked = self._acked
        flight = Flight()
        for pos, key in enumerate(keys):
            other = pending.get(key)
            if other is flight or (key in acked and self._is_acked(key, now)):
                duplicate.append(pos)
            elif other is not None:
                waiting.append((pos, other))
            else:
                pending[key] = flight
                new.append(pos)
        flight.remaining = len(new)
        return Claim(new, duplicate, waiting)

    def settle(self, keys: Iterable[str], acked: bool) -> None:
        """The fate of claimed keys: acknowledged by Kafka (remember them) or not (forget)."""
        now = self._clock()
        remember = acked and self._max_size > 0
        pending = self._pending
        cache = self._acked
        for key in keys:
            flight = pending.pop(key, None)
            if remember:
                cache[key] = now
                cache.move_to_end(key)
            if flight is not None:
                if not acked:
                    flight.failed.add(key)
                flight.remaining -= 1
                if flight.remaining <= 0:
                    flight.landed()
        if remember:
            self._trim(now)

    async def wait(self, waiting: Sequence[tuple[str, Flight]], timeout: float) -> bool:
        """Whether every ``(key, flight)`` of other requests ends acknowledged in time."""
        flights = {flight.done for _, flight in waiting}
        _, still = await asyncio.wait(flights, timeout=max(0.0, timeout))
        return not still and not any(key in flight.failed for key, flight in waiting)

    def _trim(self, now: float) -> None:
        acked = self._acked
        while len(acked) > self._max_size:
            acked.popitem(last=False)
        # Oldest first: stop at the first entry still young enough.
        while acked:
            key, at = next(iter(acked.items()))
            if now - at <= self._ttl:
                break
            del acked[key]
