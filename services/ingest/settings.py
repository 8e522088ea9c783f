"""Ingest settings (``BW_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import HttpServiceSettings


class IngestSettings(HttpServiceSettings):
    port: int = Field(8081, ge=1, le=65535)
    max_events: int = Field(10_000, ge=1, description="Most events in one request.")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Largest request body.")
    produce_timeout: float = Field(
        5.0, gt=0, description="Longest wait for the broker's ack before answering 503."
    )
    record_max_events: int = Field(
        500, ge=1, description="Most events of one section carried by one Kafka record."
    )
    future_tolerance_seconds: int = Field(
        300, ge=0, description="How far ahead observed_at may be."
    )
    max_age_seconds: int = Field(
        8 * 24 * 3600,
        ge=60,
        description="Oldest observed_at accepted (the aggregator's retention).",
    )
