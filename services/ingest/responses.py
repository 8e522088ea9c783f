"""Response bodies of the ingest service, as documented in its OpenAPI."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.models import DeadLetter


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the item in the request (0-based).")
    field: str = Field(description="Field path in the item, e.g. `source.type`, or `(event)`.")
    reason: str
    event_id: str | None = Field(None, description="The item's event_id, if it had one.")


class FieldEventsResult(BaseModel):
    """Each item's outcome. Resend only the rejected ones, fixed; accepted and
    duplicate ones are in Kafka (the broker acknowledged them)."""

    accepted: list[str] = Field(description="event_ids produced by this request.")
    duplicate: list[str] = Field(
        description="event_ids already in Kafka (posted before, or twice in this request)."
    )
    rejected: list[RejectedEvent]


class RejectedReport(BaseModel):
    index: int
    field: str
    reason: str
    report_id: str | None = None


class ReportsResult(BaseModel):
    accepted: list[str] = Field(description="report_ids produced by this request.")
    duplicate: list[str] = Field(description="report_ids already in Kafka.")
    rejected: list[RejectedReport]


class ErrorItem(BaseModel):
    field: str
    reason: str
    index: int | None = None
    event_id: str | None = None
    report_id: str | None = None


class ErrorBody(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)
    limit: int | None = Field(None, description="The limit that was exceeded (413).")
    retry_after: int | None = Field(None, description="Seconds to wait (429, 503).")


class DeadLetters(BaseModel):
    items: list[DeadLetter] = Field(description="Newest first.")
