"""Ingest settings (``BW_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import HttpServiceSettings


class IngestSettings(HttpServiceSettings):
    port: int = Field(8081, ge=1, le=65535)
    max_events: int = Field(10_000, ge=1, description="Most events (or reports) in one request.")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Largest request body.")
    produce_timeout: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Longest wait, from the body's arrival, for the broker's ack before 503.",
    )
    record_max_events: int = Field(
        500, ge=1, description="Most events of one section carried by one Kafka record."
    )
    record_max_bytes: int = Field(
        900_000,
        ge=16_384,
        description="Largest Kafka record value; bigger groups are split (brokers default to 1 MB).",
    )
    future_tolerance_seconds: int = Field(
        300, ge=0, description="How far ahead observed_at may be."
    )
    max_age_seconds: int = Field(
        8 * 24 * 3600,
        ge=60,
        description="Oldest observed_at accepted (the aggregator's retention).",
    )
    dedupe_size: int = Field(
        100_000, ge=0, description="Acknowledged event ids remembered for duplicates (0: off)."
    )
    dedupe_ttl_seconds: float = Field(
        24 * 3600, gt=0, description="How long an acknowledged id is remembered."
    )
    late_ack_seconds: float = Field(
        60.0,
        gt=0,
        description="After a 503, how long ids of records already handed to Kafka stay "
        "'in flight' (a retry waits for their fate instead of producing them again).",
    )
    rate_limit_per_second: float = Field(
        50.0, ge=0, description="Requests per second per token (token bucket; 0: no limit)."
    )
    rate_limit_burst: int = Field(100, ge=1, description="Requests a token may burst.")
    dead_letter_max_bytes: int = Field(
        65_536, ge=256, description="Most original bytes kept in one dead-letter record."
    )
    dead_letter_queue: int = Field(
        10_000, ge=1, description="Dead letters buffered for Kafka; more are dropped (counted)."
    )
    dead_letter_read_max: int = Field(
        1000, ge=1, description="Most dead letters GET /v1/dead-letter returns."
    )
