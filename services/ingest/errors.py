"""Errors the ingest service raises on purpose (turned into HTTP answers at the edge)."""

from __future__ import annotations

from services.common.errors import BorderwatchError


class IngestError(BorderwatchError):
    """Base of the ingest service's errors."""


class BrokerUnavailable(IngestError):
    """The broker did not acknowledge (or answer) in time; nothing may be reported as
    accepted. Answered 503 with Retry-After."""


class BodyError(IngestError, ValueError):
    """The body as a whole cannot be read (not JSON, wrong top-level type, no items).
    Answered 422."""


class BodyTooLarge(IngestError):
    """The body is larger than the limit. Answered 413."""
