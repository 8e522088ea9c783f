"""Kafka client factory and topic administration shared by the services."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from services.common import aiokafka_mend
from services.common.errors import ConfigError
from services.common.settings import CommonSettings
from services.common.topics import Topics, topic_specs

log = logging.getLogger(__name__)

# Every process that builds a Kafka client imports this module (aiokafka_mend says why).
aiokafka_mend.install()


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (and Faust's) picks for ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class KeyHashPartitioner:
    """aiokafka's ``DefaultPartitioner`` (a producer's ``partitioner=``) with each key's
    murmur2 hash remembered: aiokafka's murmur2 is pure Python, ~1.3 us per record,
    and ingest's keys are section ids, a few dozen. The same partition for every key
    and partition list; a key of None goes to DefaultPartitioner (random)."""

    def __init__(self, max_keys: int = 4096) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys  # a bound, should the keys ever be unbounded

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(DefaultPartitioner()(key, all_partitions, available))
        masked = self._hashes.get(key)
        if masked is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            masked = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[masked % len(all_partitions)]


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


@dataclass(frozen=True)
class Replication:
    """How topics are replicated on a cluster of ``brokers``."""

    factor: int
    min_insync: int
    brokers: int


def resolve_replication(
    brokers: int, factor: int | None = None, min_insync: int | None = None
) -> Replication:
    """The settings' replication checked against the cluster, defaults by its size
    (3 copies, 2 in sync, from 3 brokers up). Refuses what the cluster cannot do,
    naming the setting."""
    default_factor = min(3, max(1, brokers))
    rf = factor if factor is not None else default_factor
    if rf > brokers:
        raise ConfigError(
            f"BW_TOPIC_REPLICATION_FACTOR={rf}: the cluster has only {brokers} "
            f"broker{'s' if brokers != 1 else ''}; give at most {brokers} or add brokers"
        )
    isr = min_insync if min_insync is not None else (2 if rf >= 3 else 1)
    if isr > rf:
        raise ConfigError(
            f"BW_TOPIC_MIN_INSYNC_REPLICAS={isr}: more than the replication factor {rf}; "
            "no write could ever be acknowledged"
        )
    if isr == rf and rf > 1:
        log.warning(
            "min.insync.replicas %d equals the replication factor: one broker down "
            "stops every write (acks=all)",
            isr,
        )
    return Replication(rf, isr, brokers)


async def _brokers(admin: AIOKafkaAdminClient) -> int:
    return len((await admin.describe_cluster())["brokers"])


async def replication_for(settings: CommonSettings) -> Replication:
    """The replication topics get on the cluster at ``settings.kafka_bootstrap``."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        brokers = await _brokers(admin)
    finally:
        await admin.close()
    return resolve_replication(
        brokers, settings.topic_replication_factor, settings.topic_min_insync_replicas
    )


async def ensure_topics(settings: CommonSettings, field_partitions: int = 6) -> list[str]:
    """Create every borderwatch topic that does not exist yet; returns the created names.

    Replication comes from the settings, with defaults by cluster size
    (:func:`resolve_replication`); a topic that exists with fewer copies is logged,
    not changed (moving replicas is an operator's decision)."""
    topics = Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    created = []
    try:
        replication = resolve_replication(
            await _brokers(admin),
            settings.topic_replication_factor,
            settings.topic_min_insync_replicas,
        )
        existing = set(await admin.list_topics())
        ours = {topics.prefix + spec.suffix for spec in topic_specs(field_partitions)}
        for topic in await admin.describe_topics(sorted(ours & existing)):
            copies = min((len(p["replicas"]) for p in topic["partitions"]), default=0)
            if copies and copies < replication.factor:
                log.warning(
                    "topic %s exists with %d replica(s), fewer than %d; it stays so",
                    topic["topic"],
                    copies,
                    replication.factor,
                )
        wanted = [
            NewTopic(
                topics.prefix + spec.suffix,
                num_partitions=spec.partitions,
                replication_factor=replication.factor,
                topic_configs={
                    **spec.config,
                    "min.insync.replicas": str(replication.min_insync),
                },
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


async def wait_for_brokers(settings: CommonSettings, brokers: int, timeout: float = 60.0) -> None:
    """Wait until the cluster's metadata lists ``brokers`` live brokers."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), timeout=5)
            seen = await asyncio.wait_for(_brokers(admin), timeout=5)
            if seen >= brokers:
                return
        except (KafkaError, OSError, TimeoutError):
            pass
        finally:
            try:
                await admin.close()
            except Exception:
                pass
        await asyncio.sleep(0.3)
    raise TimeoutError(
        f"Kafka at {settings.kafka_bootstrap} listed {seen} of {brokers} brokers "
        f"after {timeout:.0f}s"
    )


async def partition_layout(
    settings: CommonSettings, topics: list[str] | None = None, timeout: float = 30.0
) -> dict[tuple[str, int], tuple[int, list[int], list[int]]]:
    """(leader, replicas, in-sync replicas) of every partition of ``topics`` (all: None).

    Retried until ``timeout``: the admin client asks a random broker, which may be
    the one that just died."""
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), timeout=5)
            described = await asyncio.wait_for(admin.describe_topics(topics), timeout=5)
            if any(t["error_code"] or not t["partitions"] for t in described):
                # Just created, or its leader is being elected: not known yet.
                raise KafkaError(f"metadata incomplete: {described}")
            return {
                (t["topic"], p["partition"]): (p["leader"], list(p["replicas"]), list(p["isr"]))
                for t in described
                for p in t["partitions"]
            }
        except (KafkaError, OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
        finally:
            try:
                await admin.close()
            except Exception:
                pass


async def under_replicated(settings: CommonSettings) -> int:
    """Partitions of the cluster with fewer in-sync replicas than replicas."""
    layout = await partition_layout(settings)
    return sum(len(isr) < len(replicas) for _, replicas, isr in layout.values())


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
