"""The audit trail: security-relevant actions as records on the append-only
``bw.audit`` topic (schema ``schemas/audit.schema.json``).

Services call :meth:`AuditLog.record` (never blocks, never fails a request: a
full queue drops the record and counts it in ``bw_audit_dropped_total``); the
log's own task sends the records with ``acks=all``. Refused authentication
attempts (a token presented and refused; no token at all is only counted) are
recorded at most ``refusals_per_second`` (burst ``refusals_burst``)
per process, so a flood of bad tokens cannot flood the trail: the next record
says how many were ``suppressed`` meanwhile (and they are all counted in
``bw_auth_refused_total``).

The ``borderwatch token`` command is not a long-running process: it publishes
its record at once (:func:`publish_now`) and, when Kafka cannot be reached, keeps
it in an outbox file beside the tokens file, sent by the next token command or
``borderwatch up`` that reaches Kafka.

Records carry a token's id and label, never the token, its secret or its hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from schemas.models import AuditAction, AuditActor, AuditRecord
from services.common.auth import Principal, Refusal
from services.common.ratelimit import RateLimiter

log = logging.getLogger(__name__)

AUDIT_RECORDS = Counter("bw_audit_records_total", "Audit records sent to Kafka", ["action"])
AUDIT_DROPPED = Counter(
    "bw_audit_dropped_total", "Audit records dropped (queue full or Kafka unreachable)"
)
AUTH_REFUSED = Counter("bw_auth_refused_total", "Refused authentication attempts", ["reason"])


def new_record(
    action: AuditAction,
    service: str,
    actor: AuditActor,
    *,
    outcome: str = "ok",
    target: str | None = None,
    client: str | None = None,
    detail: dict[str, str | int | bool | None] | None = None,
) -> dict[str, Any]:
    """A validated audit record as JSON-ready data."""
    return AuditRecord(
        audit_id=uuid.uuid4(),
        at=datetime.now(UTC),
        action=action,
        outcome=outcome,
        service=service,
        actor=actor,
        target=target,
        client=client,
        detail=detail or {},
    ).model_dump(mode="json")


def actor_of(principal: Principal) -> AuditActor:
    return AuditActor(token_id=principal.token_id, label=principal.label)


def _client(conn: Any) -> str | None:
    client = getattr(conn, "client", None)
    return str(client.host) if client is not None else None


class AuditLog:
    """The audit records of one service process, sent by :meth:`run`."""

    def __init__(
        self,
        service: str,
        topic: str,
        make_producer: Callable[[], AIOKafkaProducer],
        *,
        queue_size: int = 10_000,
        refusals_per_second: float = 1.0,
        refusals_burst: int = 20,
    ) -> None:
        self.service = service
        self.topic = topic
        self._make_producer = make_producer
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_size)
        self._refusals = RateLimiter(refusals_per_second, refusals_burst, max_tokens=1)
        self._suppressed = 0

    def record(
        self,
        action: AuditAction,
        actor: AuditActor,
        *,
        outcome: str = "ok",
        target: str | None = None,
        client: str | None = None,
        detail: dict[str, str | int | bool | None] | None = None,
    ) -> None:
        rec = new_record(
            action,
            self.service,
            actor,
            outcome=outcome,
            target=target,
            client=client,
            detail=detail,
        )
        try:
            self._queue.put_nowait(rec)
        except asyncio.QueueFull:
            AUDIT_DROPPED.inc()

    def refused(self, conn: Any, refusal: Refusal) -> None:
        """Hook for ``app.state.on_refused``: a refused token, rate-limited."""
        AUTH_REFUSED.labels(refusal.reason).inc()
        if refusal.reason == "missing":
            return  # no credentials presented: not an attempt (a login page, a probe)
        if self._refusals.take("refusals") > 0:
            self._suppressed += 1
            return
        url = getattr(conn, "url", None)
        detail: dict[str, str | int | bool | None] = {"reason": refusal.reason}
        if self._suppressed:
            detail["suppressed"] = self._suppressed
            self._suppressed = 0
        self.record(
            AuditAction.auth_refused,
            AuditActor(token_id=refusal.token_id),
            outcome="refused",
            target=url.path if url is not None else None,
            client=_client(conn),
            detail=detail,
        )

    async def run(self) -> None:
        """Send queued records until cancelled; then send what is left (bounded)."""
        producer: AIOKafkaProducer | None = None
        try:
            while True:
                rec = await self._queue.get()
                while producer is None:
                    candidate = self._make_producer()
                    try:
                        await candidate.start()
                        producer = candidate
                    except Exception as exc:
                        log.warning("audit: Kafka not reachable yet (%r); retrying", exc)
                        with contextlib.suppress(Exception):
                            await candidate.stop()
                        await asyncio.sleep(1.0)
                await self._send(producer, rec)
        finally:
            if producer is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        while not self._queue.empty():
                            await self._send(producer, self._queue.get_nowait())
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, rec: dict[str, Any]) -> None:
        for attempt in range(5):
            try:
                await producer.send_and_wait(
                    self.topic, orjson.dumps(rec), key=str(rec["action"]).encode()
                )
                AUDIT_RECORDS.labels(rec["action"]).inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "audit: sending %s failed (%r), attempt %d", rec["action"], exc, attempt
                )
                await asyncio.sleep(0.5 * (attempt + 1))
        AUDIT_DROPPED.inc()
        log.error("audit: dropped a %s record after 5 attempts", rec["action"])


# --- the CLI ---------------------------------------------------------------------------


def outbox_path(tokens_file: Path) -> Path:
    return tokens_file.with_name(tokens_file.name + ".audit-outbox.jsonl")


def cli_actor() -> AuditActor:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container is not a reason to fail
        user = "unknown"
    return AuditActor(os_user=user)


async def _publish(settings: Any, records: list[dict[str, Any]], timeout: float) -> None:
    from services.common.kafka import make_producer
    from services.common.topics import Topics

    topic = Topics(settings.topic_prefix).audit
    producer = make_producer(settings, request_timeout_ms=int(timeout * 1000))
    async with asyncio.timeout(timeout):
        await producer.start()
    try:
        async with asyncio.timeout(timeout):
            for rec in records:
                await producer.send_and_wait(
                    topic, orjson.dumps(rec), key=str(rec["action"]).encode()
                )
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()


def publish_now(
    settings: Any | None, tokens_file: Path, records: list[dict[str, Any]], timeout: float = 8.0
) -> str | None:
    """Send ``records`` and any left in the outbox; on failure keep them all in the
    outbox. Returns None when sent, else why not."""
    outbox = outbox_path(tokens_file)
    pending: list[dict[str, Any]] = []
    if outbox.exists():
        pending = [json.loads(line) for line in outbox.read_text("utf-8").splitlines() if line]
    pending += records
    if not pending:
        return None
    problem: str | None = None
    if settings is None:
        problem = "no Kafka configured (BW_KAFKA_BOOTSTRAP) and no running `borderwatch up`"
    else:
        try:
            asyncio.run(_publish(settings, pending, timeout))
        except Exception as exc:
            problem = f"Kafka at {settings.kafka_bootstrap} not reachable ({exc!r})"
    if problem is None:
        outbox.unlink(missing_ok=True)
        return None
    tmp = outbox.with_name(outbox.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in pending), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(outbox)
    return problem
