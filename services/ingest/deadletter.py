"""Refused items go to ``bw.dead-letter``; admins read the recent ones back.

A dead letter (``schemas.models.DeadLetter``) keeps the original bytes (capped),
why they were refused, the token's id (never the token) and when. Writing is
best effort and never delays or fails the client's answer: letters wait in a
bounded queue for the producer, and what does not fit is dropped and counted
(``bw_ingest_dead_letters_total{outcome="dropped"}``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from services.ingest.errors import BrokerUnavailable
from services.ingest.producer import KafkaGate

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "bw_ingest_dead_letters_total",
    "Refused items for the dead-letter topic, by outcome (produced, dropped, failed)",
    ["outcome"],
)


def _original(data: bytes, max_bytes: int) -> tuple[str, str]:
    """(text, encoding) of the first ``max_bytes`` of ``data``: UTF-8 if it is, else base64."""
    kept = data[:max_bytes]
    # A cut may split a multi-byte character: drop at most 3 trailing bytes for it.
    for cut in range(4 if len(data) > max_bytes else 1):
        try:
            return kept[: len(kept) - cut].decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            continue
    return base64.b64encode(kept).decode("ascii"), "base64"


def dead_letter(
    *,
    received_at: datetime,
    route: str,
    token_id: str,
    index: int | None,
    item_id: str | None,
    problems: Sequence[tuple[str, str]],
    content_type: str,
    original: bytes,
    max_bytes: int,
) -> dict[str, Any]:
    """A ``DeadLetter`` as a plain dict (built without the model: this is a hot path when
    a client sends thousands of bad items; a unit test holds it to the model)."""
    text, encoding = _original(original, max_bytes)
    return {
        "schema_version": 1,
        "received_at": received_at.isoformat(),
        "route": route,
        "token_id": token_id,
        "index": index,
        "item_id": item_id,
        "problems": [{"field": f, "reason": r} for f, r in problems]
        or [{"field": "(body)", "reason": "refused"}],
        "content_type": content_type[:128],
        "original": text,
        "original_encoding": encoding,
        "original_size": len(original),
        "truncated": len(original) > max_bytes,
    }


class DeadLetterWriter:
    """A bounded queue of dead letters and the task that hands them to Kafka."""

    def __init__(self, gate: KafkaGate, topic: str, queue_size: int) -> None:
        self._gate = gate
        self._topic = topic
        self._queue: asyncio.Queue[tuple[bytes, bytes, int]] = asyncio.Queue(queue_size)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def offer(self, letter: dict[str, Any]) -> None:
        ts = int(datetime.fromisoformat(letter["received_at"]).timestamp() * 1000)
        try:
            self._queue.put_nowait((letter["token_id"].encode(), orjson.dumps(letter), ts))
        except asyncio.QueueFull:
            DEAD_LETTERS.labels("dropped").inc()

    async def run(self) -> None:
        """Hand queued letters to the producer; runs until cancelled."""
        while True:
            key, value, ts = await self._queue.get()
            await self._gate.wait_ready()
            try:
                future = await asyncio.wait_for(
                    self._gate.send(self._topic, key, value, ts), timeout=5.0
                )
            except (BrokerUnavailable, KafkaError, TimeoutError) as exc:
                DEAD_LETTERS.labels("failed").inc()
                log.warning("dead letter for %s not produced: %r", self._topic, exc)
                continue
            future.add_done_callback(_count)


def _count(future: asyncio.Future[Any]) -> None:
    ok = not future.cancelled() and future.exception() is None
    DEAD_LETTERS.labels("produced" if ok else "failed").inc()


async def read_recent(
    make_consumer: Callable[[], AIOKafkaConsumer], topic: str, limit: int, timeout: float
) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters on ``topic``, newest first, read within ``timeout``.

    Raises BrokerUnavailable when the topic cannot be read in time."""
    consumer = make_consumer()
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                # A consumer without subscriptions knows no topic until asked to look.
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                return []
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            remaining = set()
            for tp in tps:
                first = max(starts[tp], ends[tp] - limit)
                if first < ends[tp]:
                    consumer.seek(tp, first)
                    remaining.add(tp)
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        try:
                            out.append((record.timestamp, orjson.loads(record.value)))
                        except orjson.JSONDecodeError:
                            log.warning(
                                "unreadable dead letter at %s:%s:%s",
                                record.topic,
                                record.partition,
                                record.offset,
                            )
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise BrokerUnavailable(f"could not read {topic}: {exc!r}") from exc
    finally:
        try:
            await asyncio.wait_for(consumer.stop(), timeout=5.0)
        except Exception:
            log.debug("consumer stop failed", exc_info=True)
    out.sort(key=lambda pair: pair[0], reverse=True)
    return [letter for _, letter in out[:limit]]
