"""Kafka record headers borderwatch services agree on (no framework import).

``bw-received-ms``: when ingest received the HTTP request that carried the
record's events, in Unix milliseconds (ASCII digits). The aggregator measures
ingest → state-published latency from it (``bw_pipeline_ingest_to_published_seconds``).

``bw-version``: on ``bw.section-state``, the state's ``version`` (ASCII digits),
so a reader can tell which of a section's states is newest without decoding
them (the assessor decodes only the newest state of each section it holds).
"""

from __future__ import annotations

from collections.abc import Iterable

RECEIVED_MS = "bw-received-ms"
VERSION = "bw-version"


def received_header(received_at: float) -> tuple[str, bytes]:
    """The header for a request received at ``received_at`` (Unix seconds)."""
    return (RECEIVED_MS, str(round(received_at * 1000)).encode())


def received_at(headers: Iterable[tuple[str, bytes]] | None) -> float | None:
    """The receive time (Unix seconds) a record's headers carry, or None (no header,
    or not a number: records from before the header, or from another producer)."""
    if not headers:
        return None
    for name, value in headers:
        if name == RECEIVED_MS:
            try:
                return int(value) / 1000.0
            except (TypeError, ValueError):
                return None
    return None


def version_header(version: int) -> tuple[str, bytes]:
    """The header of a section state of ``version``."""
    return (VERSION, b"%d" % version)


def version_of(headers: Iterable[tuple[str, bytes]] | None) -> int | None:
    """The state version a record's headers carry, or None (no header, or not a
    non-negative integer: states from before the header, or from another producer)."""
    if not headers:
        return None
    for name, value in headers:
        if name == VERSION:
            if isinstance(value, bytes) and value.isdigit():
                return int(value)
            return None
    return None
