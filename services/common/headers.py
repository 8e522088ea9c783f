"""Kafka record headers borderwatch services agree on (no framework import).

``bw-received-ms``: when ingest received the HTTP request that carried the
record's events, in Unix milliseconds (ASCII digits). The aggregator measures
ingest → state-published latency from it (``bw_pipeline_ingest_to_published_seconds``).
"""

from __future__ import annotations

from collections.abc import Iterable

RECEIVED_MS = "bw-received-ms"


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
