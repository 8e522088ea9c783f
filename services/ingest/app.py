"""The ingest service: the door of borderwatch.

Run: ``uvicorn services.ingest.app:create_app --factory --port 8081``
(``borderwatch up`` does it for you). Configured by ``BW_`` environment
variables (see README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from schemas.models import FieldEvent, ReportEvent
from services.common import gctune
from services.common.audit import AuditLog
from services.common.auth import TokenStore
from services.common.catalogue import Catalogue
from services.common.http import NO_TELEMETRY, add_common_routes, install_error_handlers
from services.common.kafka import KeyHashPartitioner, make_consumer, make_producer
from services.common.logs import configure_logging
from services.common.ratelimit import RateLimiter
from services.common.security import SecurityHeaders
from services.common.settings import load_settings
from services.common.topics import Topics
from services.ingest.deadletter import DeadLetterWriter
from services.ingest.dedupe import Idempotency
from services.ingest.fastpath import IngestApp, field_events_door
from services.ingest.metrics import RequestTimer
from services.ingest.producer import KafkaGate
from services.ingest.routes import ROUTES, Ingest, router
from services.ingest.settings import IngestSettings

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings | None = None, *, fast_path: bool = True) -> IngestApp:
    """The ingest app. ``fast_path=False`` leaves ``POST /v1/field-events`` to the
    FastAPI route alone (tests compare the two)."""
    settings = settings or load_settings(IngestSettings)
    configure_logging(settings.log_level)
    catalogue = Catalogue.load(settings.sections_file)
    tokens = TokenStore.load(
        settings.tokens_file,
        settings.tokens.get_secret_value() if settings.tokens else None,
        last_used_file=settings.tokens_last_used_file,
    )
    topics = Topics(settings.topic_prefix)
    audit = AuditLog("ingest", topics.audit, lambda: make_producer(settings, linger_ms=5))
    idempotency = Idempotency(settings.dedupe_size, settings.dedupe_ttl_seconds)
    gate = KafkaGate(
        # Retries inside aiokafka stay within the request's deadline budget: the
        # route answers 503 at the deadline; what was handed over may land later.
        # No linger: aiokafka keeps one produce request in flight per broker, and what
        # arrives during its round trip goes in the next one anyway. Lingering only
        # woke the sender twice per request (bench.ingest --batch 1: 0.44-0.46 ms of
        # CPU per request with 0 ms, 0.49-0.51 ms with 2 ms; p50 5-7 ms against 7-10).
        lambda: make_producer(
            settings, request_timeout_ms=30_000, linger_ms=0, partitioner=KeyHashPartitioner()
        ),
        settle=idempotency.settle,
        late_ack_seconds=settings.late_ack_seconds,
    )

    def consumer() -> AIOKafkaConsumer:
        return make_consumer(settings, request_timeout_ms=5_000, enable_auto_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ingest = Ingest(
            settings=settings,
            sections=frozenset(catalogue),
            topics=topics,
            idempotency=idempotency,
            gate=gate,
            dead_letters=DeadLetterWriter(gate, topics.dead_letter, settings.dead_letter_queue),
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            make_consumer=consumer,
            dead_letter_reads=asyncio.Semaphore(2),
            loop=asyncio.get_running_loop(),
        )
        app.state.ingest = ingest
        restore_gc = gctune.tune()
        tasks = [
            asyncio.create_task(gate.keep_alive(), name="kafka-gate"),
            asyncio.create_task(ingest.dead_letters.run(), name="dead-letters"),
            asyncio.create_task(audit.run(), name="audit"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await gate.stop()
            tokens.flush_last_used()
            restore_gc()

    app = IngestApp(
        title="borderwatch ingest",
        version="1",
        description="Posts field events and reports into borderwatch. Every 2xx means the "
        "broker acknowledged (acks=all) every event listed as accepted or duplicate.",
        lifespan=lifespan,
        # Metrics go to Prometheus (/metrics). FastAPI's OpenTelemetry bridge asks
        # for the global providers on every request even when none is configured:
        # ~5 % of ingest's CPU per single-event request (py-spy, bench.ingest --batch 1).
        telemetry=NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.catalogue = catalogue
    app.state.tokens = tokens
    app.state.auth_enabled = settings.auth_enabled
    # Ingest applies its own rate limit (Ingest.limiter, after the token check); None
    # says so to admit_token, which otherwise pays for a failed lookup per request.
    app.state.limiter = None
    app.state.audit = audit
    app.state.on_refused = audit.refused
    install_error_handlers(app)
    add_common_routes(app, ready=lambda: gate.ready)
    app.include_router(router)
    app.add_middleware(RequestTimer, routes=ROUTES)
    app.add_middleware(SecurityHeaders, max_query_bytes=settings.max_query_bytes)
    if fast_path:
        app.door = field_events_door(app, settings.max_query_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the request-body models the routes reference (they read
    their bodies themselves, to stream them with a cap and accept NDJSON)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _, defs = models_json_schema(
        [(FieldEvent, "validation"), (ReportEvent, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model_schema in defs.get("$defs", {}).items():
        components.setdefault(name, model_schema)
    app.openapi_schema = schema
    return schema
