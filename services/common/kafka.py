"""Kafka client factory and topic administration shared by the services."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from services.common.settings import CommonSettings
from services.common.topics import Topics, topic_specs

log = logging.getLogger(__name__)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (and Faust's) picks for ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def ssl_context(settings: CommonSettings) -> ssl.SSLContext | None:
    """The TLS context for the brokers (SSL, SASL_SSL), or None for plain TCP.

    Verifies the brokers' certificates and host names against ``kafka_ssl_cafile``
    (else the system's CAs), and presents a client certificate for mutual TLS.
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile is not None and settings.kafka_ssl_keyfile is not None:
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    return context


def client_options(settings: CommonSettings) -> dict[str, Any]:
    """Connection options for every aiokafka client, from the shared settings.

    The aggregator's Faust app gets the same through ``services.aggregator.credentials``.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def make_producer(settings: CommonSettings, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_batch_size": 1 << 20,
        "max_request_size": 8 << 20,
        "compression_type": None,
    }
    options.update(overrides)
    return AIOKafkaProducer(**client_options(settings), **options)


def make_consumer(settings: CommonSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    options: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **client_options(settings), **options)


async def ensure_topics(settings: CommonSettings, field_partitions: int = 6) -> list[str]:
    """Create every borderwatch topic that does not exist yet; returns the created names."""
    topics = Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    created = []
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                topics.prefix + spec.suffix,
                num_partitions=spec.partitions,
                replication_factor=1,
                topic_configs=spec.config,
            )
            for spec in topic_specs(field_partitions)
            if topics.prefix + spec.suffix not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process raced us; fine
            created = [t.name for t in wanted]
    finally:
        await admin.close()
    return created


async def wait_for_broker(settings: CommonSettings, timeout: float = 60.0) -> None:
    """Wait until the cluster answers a metadata request, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), timeout=5)
            await asyncio.wait_for(admin.describe_cluster(), timeout=5)
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.3)
        finally:
            try:
                await admin.close()
            except Exception:
                pass
    raise TimeoutError(
        f"Kafka at {settings.kafka_bootstrap} did not answer in {timeout:.0f}s: {last}"
    )
