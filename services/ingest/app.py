"""The ingest service: the door of borderwatch.

Run: ``uvicorn services.ingest.app:create_app --factory --port 8081``
(``borderwatch up`` does it for you). Configured by ``BW_`` environment
variables (see README).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.errors import KafkaError
from fastapi import FastAPI

from services.common.auth import TokenStore
from services.common.catalogue import Catalogue
from services.common.http import add_common_routes, install_error_handlers
from services.common.kafka import make_producer
from services.common.logs import configure_logging
from services.common.settings import load_settings
from services.common.topics import Topics
from services.ingest.producer import EventProducer
from services.ingest.routes import router
from services.ingest.settings import IngestSettings

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or load_settings(IngestSettings)
    configure_logging(settings.log_level)
    catalogue = Catalogue.load(settings.sections_file)
    tokens = TokenStore.load(
        settings.tokens_file, settings.tokens.get_secret_value() if settings.tokens else None
    )
    topics = Topics(settings.topic_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = make_producer(settings)
        app.state.ready = False
        starter = asyncio.create_task(_start_producer(producer, app))
        app.state.events = EventProducer(
            producer,
            topics.field_events,
            timeout=settings.produce_timeout,
            record_max_events=settings.record_max_events,
        )
        try:
            yield
        finally:
            starter.cancel()
            try:
                await producer.stop()
            except Exception:
                log.debug("producer stop failed", exc_info=True)

    app = FastAPI(
        title="borderwatch ingest",
        version="1",
        description="Posts field events into borderwatch. Every 2xx means the broker "
        "acknowledged the accepted events.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.catalogue = catalogue
    app.state.tokens = tokens
    app.state.auth_enabled = settings.auth_enabled
    install_error_handlers(app)
    add_common_routes(app, ready=lambda: bool(app.state.ready))
    app.include_router(router)
    return app


async def _start_producer(producer: object, app: FastAPI) -> None:
    """Start the producer, retrying while the broker is not there yet."""
    delay = 0.2
    started = time.monotonic()
    while True:
        try:
            await producer.start()  # type: ignore[attr-defined]
            app.state.ready = True
            log.info("producer connected after %.1fs", time.monotonic() - started)
            return
        except (KafkaError, OSError) as exc:
            log.warning("broker not reachable yet (%r); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
