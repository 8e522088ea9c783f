"""Bulk delivery of the input topic's records to the counting task.

faust-streaming 0.15.3 hands every record to its agents one at a time. Its
consumer's drain loop awaits ``Service.wait_first(callback(message),
suspend_flow.wait())`` per record, which creates four asyncio tasks each time;
then the conductor takes a lock, decodes the record into an ``Event``, puts it on
the agent's channel queue, and the stream takes it off again, runs its
processors and acks it. On this 2-core machine that path tops out at ~4,500
records/s even for an agent that does nothing (ARCHITECTURE.md, measured), so
with one event per record (sensors post one event per request) no aggregator
built on it can count 10,000 events/s.

This module keeps Faust as the runtime (consumer group, assignment, table
recovery, offset commits, flow control) and changes only how records of the
*bulk topics* travel from the consumer to the code that counts them:

- :func:`install` makes Faust build a consumer whose drain loop sets records of
  a bulk topic aside in a :class:`BulkSink` (the same read-offset and gap
  bookkeeping as Faust's own loop, ``track_message`` as the conductor does),
  once per fetch instead of per record. Records of every other topic (table
  changelogs) take Faust's own path unchanged.
- The counting task takes them in batches (:meth:`BulkSink.take`) and acks each
  record after handling it, as ``Stream.take_events`` did, so Faust's commits
  still follow only what was handled.
- The sink is a flow-controlled queue: Faust's rebalance clears it with the
  channel queues (``flow_control.clear()``), and records are set aside only
  while flow is active. A full sink holds the drain loop back (waiting with
  ``suspend_flow`` like Faust's own loop), so a slow counter applies
  back-pressure instead of growing memory.

Two defects of Faust's consumer are mended here too (session 7):
:meth:`BulkConsumer.getmany` fetches again the changelog records Faust drops
during a rebalance (they have no committed offset to be read again from, and
a table recovery waited for them forever), and :meth:`BulkConsumer._seek`
seeks on the consumer's thread (Faust seeks from the worker's loop, racing the
consumer thread's ``fetched_records``).

Call :func:`install` before the app creates its consumer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, cast

import faust.transport.drivers.aiokafka as faust_aiokafka
from faust.transport.consumer import CONSUMER_FETCHING

log = logging.getLogger(__name__)


class BulkSink:
    """Records of the bulk topics, set aside by the drain loop for one taker."""

    def __init__(self, max_pending: int = 50_000) -> None:
        self.max_pending = max_pending
        self._records: deque[Any] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.consumer: Any = None  # set by the drain loop (to untrack cleared records)

    def __len__(self) -> int:
        return len(self._records)

    def put(self, records: Iterable[Any]) -> None:
        self._records.extend(records)
        self._arrived.set()
        if len(self._records) >= self.max_pending:
            self._room.clear()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    async def take(self, most: int, within: float) -> list[Any]:
        """At least one record, then what arrives within ``within`` seconds of the
        first, up to ``most`` (all at once when a backlog is waiting)."""
        while not self._records:
            self._arrived.clear()
            await self._arrived.wait()
        if len(self._records) < most:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while len(self._records) < most:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
        n = min(most, len(self._records))
        out = [self._records.popleft() for _ in range(n)]
        if len(self._records) < self.max_pending:
            self._room.set()
        return out

    def clear(self) -> None:
        """Drop what is waiting (Faust's rebalance: the records are fetched again
        from the committed offsets). Called by ``app.flow_control.clear()``."""
        dropped = len(self._records)
        if self.consumer is not None:
            unacked = self.consumer._unacked_messages
            for record in self._records:
                unacked.discard(record)
        self._records.clear()
        self._room.set()
        if dropped:
            log.info("rebalance: %d input records set aside are dropped (fetched again)", dropped)


_sinks: dict[str, BulkSink] = {}
# Fetch gathering: (fetch_min_bytes, fetch_max_wait_ms) for the worker's consumer.
_fetch: tuple[int, int] | None = None


def install(
    topic: str, sink: BulkSink, fetch_min_bytes: int = 1, fetch_max_wait_ms: int = 1500
) -> None:
    """Deliver ``topic``'s records to ``sink`` (idempotent; before the consumer exists).

    ``fetch_min_bytes`` and ``fetch_max_wait_ms`` go to the worker's consumer
    (Faust fixes them at 1 byte and 1.5 s). With one event per record arriving
    live, a fetch per record is what costs: each is a request, a response
    parsed in Python and a hop from Faust's consumer thread to the worker's
    loop. Letting the broker gather up to ``fetch_min_bytes`` for at most
    ``fetch_max_wait_ms`` turns 200 fetches/s into ~1/wait; with a backlog,
    fetches are full at once and nothing waits.
    """
    global _fetch
    _sinks[topic] = sink
    _fetch = (fetch_min_bytes, fetch_max_wait_ms)
    faust_aiokafka.Transport.Consumer = BulkConsumer


class _GatheringConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _start_thread(self) -> None:
        # mode's worker dumps every thread's stack on SIGUSR1 (``logging.cry``), and a
        # thread's asyncio tasks only if the thread has a ``loop``. Faust's consumer
        # thread has none, so its fetcher and metadata tasks (the client that session
        # 15 found stuck on a dead leader) were missing from the dump.
        threading.current_thread().loop = self.thread_loop  # type: ignore[attr-defined]
        super()._start_thread()

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if _fetch is not None:  # read by the consumer's fetcher when it starts
            consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = _fetch
        return consumer


def undelivered(records: Mapping[Any, list[Any]], delivered: Mapping[Any, int]) -> dict[Any, int]:
    """The first offset of each partition's fetched records that was not handed on.

    ``records`` is a fetch (each partition's records in offset order) and
    ``delivered`` the last offset handed on per partition (absent: none). A
    partition all of whose records went on is left out.
    """
    out = {}
    for tp, batch in records.items():
        if not batch:
            continue
        last = delivered.get(tp)
        if last is not None and batch[-1].offset <= last:
            continue
        for record in batch:
            if last is None or record.offset > last:
                out[tp] = record.offset
                break
    return out


async def _rewind(consumer: Any, offsets: Mapping[Any, int]) -> list[tuple[Any, int, int]]:
    """On the consumer's thread: move each still-assigned partition back to ``offset``
    when its position is past it (a seek made since, to an earlier offset, stands)."""
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    moved = []
    for tp, offset in offsets.items():
        if assignment is None or tp not in assignment.tps:
            continue
        state = assignment.state_value(tp)
        if state.has_valid_position and state.position > offset:
            moved.append((tp, state.position, offset))
            consumer.seek(tp, offset)
    return moved


async def _seek_on_thread(consumer: Any, tp: Any, offset: int) -> None:
    consumer.seek(tp, offset)


class BulkConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with bulk topics set aside once per fetch, and
    changelog records it fetched but did not deliver fetched again."""

    def _new_consumer_thread(self) -> Any:
        return _GatheringConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition: Any, offset: int) -> None:
        """Seek on the consumer's thread. Faust's ``Consumer.seek`` calls aiokafka's
        ``seek`` from the worker's loop while the consumer thread may be inside
        ``fetched_records``; both delete the partition's buffered records, and a
        seek between its ``getall`` and its ``del`` crashed a worker with
        ``KeyError`` in ``fetched_records`` (session 7, on a successor seeking
        its input partitions back)."""
        await self._thread.call_thread(
            _seek_on_thread, self._thread._ensure_consumer(), partition, offset
        )

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        """Faust's ``getmany`` (0.15.3), except that changelog records it drops are
        fetched again.

        Faust drops a fetch's records when flow stopped while the fetch waited (a
        rebalance), when the generation changed, or when the partition is no
        longer active, and relies on ``perform_seek`` (committed offsets) to read
        them again. A changelog partition has no committed offset, so nothing
        moves it back: a fetch that was waiting when the rebalance began, and
        returned the records of a newly assigned changelog partition just after
        Recovery sought it and before flow resumed, lost them for good and left
        Recovery waiting forever ("No event received for active tp ...", seen in
        CI in session 6 and caught by ``stall.describe`` in session 7: aiokafka's
        position at the highwater, nothing restored). Here each changelog
        partition with records not handed on is sought back to the first of them.
        """
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        delivered: dict[Any, int] = {}
        complete = True  # every record handed on (the usual case: nothing to check)
        to_message = self._to_message
        if self.flow_active:
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    complete = False
                    break
                if (
                    active_partitions is None
                    or tp in active_partitions
                    or tp in self._buffered_partitions
                ):
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    delivered[tp] = record.offset
                    yield tp, to_message(tp, record)
                else:
                    complete = False
        else:
            complete = False
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
        if complete:
            return
        changelogs = self.app.tables.changelog_topics
        dropped = {
            tp: offset
            for tp, offset in undelivered(records, delivered).items()
            if tp.topic in changelogs
        }
        if dropped:
            moved = await self._thread.call_thread(
                _rewind, self._thread._ensure_consumer(), dropped
            )
            for tp, position, offset in moved:
                log.info(
                    "%s[%d]: changelog records fetched but not delivered (rebalance); "
                    "fetching again from %d (was at %d)",
                    tp.topic,
                    tp.partition,
                    offset,
                    position,
                )

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - on Kafka
        # Faust's loop (faust/transport/consumer.py, 0.15.3), with the bulk branch.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        flow_control = self.app.flow_control
        track = self.track_message
        sinks = _sinks
        for sink in sinks.values():
            sink.consumer = self
            flow_control.manage_queue(cast(Any, sink))
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                set_aside: dict[str, list[Any]] = {}
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset:
                                if acks_enabled_for(message.topic):
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            if message.topic in sinks:
                                if not flow_control.is_active():
                                    await self.wait_first(
                                        flow_control.acquire(), self.suspend_flow.wait()
                                    )
                                if self.suspend_flow.is_set():
                                    set_read_offset(tp, offset)
                                    continue  # dropped, as Faust's own path drops it
                                track(message)
                                set_aside.setdefault(message.topic, []).append(message)
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    for topic, messages in set_aside.items():
                        sink = sinks[topic]
                        sink.put(messages)
                        if len(sink) >= sink.max_pending:
                            await self.wait_first(sink.wait_for_room(), self.suspend_flow.wait())
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)
