"""The API service: live picture over REST and WebSocket, dashboard, metrics.

Run: ``uvicorn services.api.app:create_app --factory --port 8080``
(``borderwatch up`` does it for you). Configured by ``BW_`` environment
variables (see README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from prometheus_client import Counter

from services.aggregator.rules import load_rules
from services.api.alertmanager import AlertmanagerPusher, client_auth, client_verify
from services.api.audit import AuditTrail
from services.api.audit import router as audit_router
from services.api.consumer import Source, ViewConsumer
from services.api.feeds import Hub
from services.api.guard import REST_RATE_LIMITED, FeedGuard
from services.api.history import Rebuilder
from services.api.routes import router
from services.api.settings import ApiSettings
from services.api.view import View
from services.common import gctune
from services.common.audit import AuditLog
from services.common.auth import TokenStore
from services.common.catalogue import Catalogue
from services.common.http import NO_TELEMETRY, add_common_routes, install_error_handlers
from services.common.kafka import make_consumer, make_producer
from services.common.logs import configure_logging
from services.common.ratelimit import RateLimiter
from services.common.security import SecurityHeaders
from services.common.settings import load_settings
from services.common.topics import Topics

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

VIEW_UPDATES = Counter("bw_api_view_updates_total", "Changes applied to the view", ["type"])


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or load_settings(ApiSettings)
    configure_logging(settings.log_level)
    catalogue = Catalogue.load(settings.sections_file)
    topics = Topics(settings.topic_prefix)
    view = View(
        catalogue,
        max_alerts=settings.max_alerts,
        recent_events=settings.recent_events,
        recent_reports=settings.recent_reports,
        # The aggregator's rules: a past hour's level is what their ladders give.
        rebuilder=Rebuilder(catalogue, load_rules(settings.rules_file)),
    )
    hub = Hub(
        settings.feed_queue_size,
        settings.feed_replay_size,
        flush_seconds=settings.feed_flush_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    pusher = (
        AlertmanagerPusher(
            settings.alertmanager_url,
            view,
            resend_seconds=settings.alertmanager_resend_seconds,
            timeout=settings.alertmanager_timeout,
            public_url=settings.public_url,
            auth=client_auth(
                settings.alertmanager_username,
                settings.alertmanager_password,
                settings.alertmanager_bearer_token,
            ),
            verify=client_verify(settings.alertmanager_ca_file),
        )
        if settings.alertmanager_url
        else None
    )

    def on_change(kind: str, payload: dict[str, Any], partition: int, offset: int) -> None:
        VIEW_UPDATES.labels(kind).inc()
        if kind == "section_state":
            hub.publish(
                kind,
                payload,
                partition,
                offset,
                country=payload["country"],
                severity=payload["level"],
                changed_kinds=view.changed_kinds.get(payload["section_id"], ()),
            )
        elif kind == "alert":
            hub.publish(
                kind,
                payload,
                partition,
                offset,
                country=payload["country"],
                severity=payload["severity"],
            )
            if pusher is not None:
                pusher.on_transition(payload)
        elif kind in ("analysis", "assessment"):
            hub.publish(kind, payload, partition, offset, country=payload["country"])
        elif kind == "ack":
            current = (view.alert(payload["alert_id"]) or [{}])[-1]
            hub.publish(
                kind,
                payload,
                partition,
                offset,
                country=str(current.get("country", "")),
                severity=current.get("severity"),
            )

    audit_trail = AuditTrail(settings.audit_recent)
    audit = AuditLog("api", topics.audit, lambda: make_producer(settings, linger_ms=5))
    sources = [
        Source(topics.section_state, "section_state", "beginning", view.apply_state),
        Source(topics.section_hours, "section_hour", "beginning", view.apply_hour),
        Source(topics.alerts, "alert", "beginning", view.apply_alert),
        Source(topics.alert_acks, "ack", "beginning", view.apply_ack),
        Source(topics.field_events, "field_events", settings.recent_events, view.apply_field_batch),
        Source(topics.report_events, "report", settings.recent_reports, view.apply_report),
        Source(topics.report_analysis, "analysis", settings.recent_reports, view.apply_analysis),
        Source(topics.assessment, "assessment", "beginning", view.apply_assessment),
        Source(topics.audit, "audit", settings.audit_recent, audit_trail.apply),
    ]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        consumer = make_consumer(
            settings,
            max_partition_fetch_bytes=8 << 20,
            # Encoding, sending and decoding a fetch of every partition was a third of
            # the API's CPU with few clients (py-spy) when each new record ended one.
            fetch_min_bytes=1 << 20,
            fetch_max_wait_ms=settings.view_fetch_wait_ms,
        )
        producer = make_producer(settings, linger_ms=0)
        reader = ViewConsumer(consumer, sources, on_change)
        app.state.reader = reader
        app.state.producer = producer
        task: asyncio.Task[None] | None = None
        guard_task: asyncio.Task[None] | None = None
        audit_task: asyncio.Task[None] | None = None
        push_task: asyncio.Task[None] | None = None
        try:
            await _start_with_retry(consumer)
            await _start_with_retry(producer)
            task = asyncio.create_task(reader.run(), name="view-consumer")
            guard_task = asyncio.create_task(app.state.feed_guard.run(), name="feed-guard")
            audit_task = asyncio.create_task(audit.run(), name="audit")
            if pusher is not None:
                push_task = asyncio.create_task(pusher.run(reader.ready), name="alertmanager")
            restore_gc = gctune.tune()
            try:
                yield
            finally:
                restore_gc()
        finally:
            hub.close_all()
            if push_task is not None:
                push_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await push_task
            for background in (guard_task, audit_task, task):
                if background is None:
                    continue
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await background
            app.state.tokens.flush_last_used()
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()

    app = FastAPI(
        title="borderwatch API",
        version="1",
        description="The live picture of the border: sections, counts, impact levels and "
        "alerts over REST and WebSocket.",
        lifespan=lifespan,
        # Metrics go to Prometheus (/metrics). FastAPI's OpenTelemetry bridge asks
        # for the global providers on every request even when none is configured:
        # ~5 % of ingest's CPU per single-event request (py-spy, bench.ingest --batch 1).
        telemetry=NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.topics = topics
    app.state.view = view
    app.state.hub = hub
    app.state.tokens = TokenStore.load(
        settings.tokens_file,
        settings.tokens.get_secret_value() if settings.tokens else None,
        last_used_file=settings.tokens_last_used_file,
    )
    app.state.auth_enabled = settings.auth_enabled
    app.state.audit = audit
    app.state.audit_trail = audit_trail
    app.state.on_refused = audit.refused
    app.state.on_rate_limited = REST_RATE_LIMITED.inc
    app.state.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.state.feed_guard = FeedGuard(
        app.state.tokens, settings.feed_max_per_token, settings.auth_enabled
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    install_error_handlers(app)
    add_common_routes(
        app, ready=lambda: hasattr(app.state, "reader") and app.state.reader.ready.is_set()
    )
    app.include_router(router)
    app.include_router(audit_router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="dashboard")
    # Outermost: an over-long query string is refused before any other layer parses it.
    app.add_middleware(SecurityHeaders, max_query_bytes=settings.max_query_bytes)
    return app


async def _start_with_retry(consumer: Any, timeout: float = 120.0) -> None:
    delay = 0.2
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await consumer.start()
            return
        except Exception as exc:
            if loop.time() > deadline:
                raise
            log.warning("broker not reachable yet (%r); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
