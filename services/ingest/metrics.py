"""Prometheus metrics of the ingest service, and the middleware that times every request."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.models import KINDS
from services.ingest.validation import Problem

ACCEPTED = Counter(
    "bw_ingest_events_accepted_total", "Field events acknowledged by Kafka", ["kind"]
)
DUPLICATE = Counter(
    "bw_ingest_events_duplicate_total",
    "Field events already acknowledged before, not produced again",
    ["kind"],
)
REJECTED = Counter(
    "bw_ingest_events_rejected_total",
    "Field events refused, per item (reason `body`: a whole body that could not be read)",
    ["reason"],
)
REPORTS_ACCEPTED = Counter(
    "bw_ingest_reports_accepted_total", "Report events acknowledged by Kafka", ["source_type"]
)
REPORTS_DUPLICATE = Counter(
    "bw_ingest_reports_duplicate_total",
    "Report events already acknowledged before, not produced again",
    ["source_type"],
)
REPORTS_REJECTED = Counter("bw_ingest_reports_rejected_total", "Report events refused", ["reason"])
UNAVAILABLE = Counter(
    "bw_ingest_broker_unavailable_total", "Requests answered 503 because Kafka did not ack"
)
RATE_LIMITED = Counter("bw_ingest_rate_limited_total", "Requests answered 429")
REQUEST_SECONDS = Histogram(
    "bw_ingest_request_seconds",
    "Request latency, by route and status code",
    ["route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Series for every bounded label value from the start, so rates read 0, not "no
# data", before the first event of a kind or the first refusal for a reason.
REJECTION_REASONS = ("body", "personal_data", "section", "future", "too_old", "schema")
for _kind in KINDS:
    ACCEPTED.labels(_kind)
    DUPLICATE.labels(_kind)
for _reason in REJECTION_REASONS:
    REJECTED.labels(_reason)

BATCH_SIZE = Histogram(
    "bw_ingest_batch_events",
    "Items per request",
    ["route"],
    buckets=(1, 10, 100, 1000, 5000, 10000),
)


def rejection_reason(problems: Iterable[Problem]) -> str:
    """One bounded label for an item's problems (the most telling one)."""
    fields = set()
    for p in problems:
        if "personal data" in p.reason:
            return "personal_data"
        if p.reason.startswith("unknown section"):
            fields.add("section")
        elif p.field in ("observed_at", "published_at") and "future" in p.reason:
            fields.add("future")
        elif p.field == "observed_at" and "retention" in p.reason:
            fields.add("too_old")
        else:
            fields.add("schema")
    for label in ("section", "future", "too_old"):
        if label in fields:
            return label
    return "schema"


def count_rejections(counter: Counter, problems: list[Problem]) -> None:
    by_index: dict[int, list[Problem]] = {}
    for p in problems:
        by_index.setdefault(p.index, []).append(p)
    tally = Tally(rejection_reason(ps) for ps in by_index.values())
    for reason, n in tally.items():
        counter.labels(reason).inc(n)


class RequestTimer:
    """Pure ASGI middleware: ``bw_ingest_request_seconds{route, status}`` for every request,
    including the ones refused before a route runs (401, 403, 413, 429)."""

    def __init__(self, app: ASGIApp, routes: Iterable[str]) -> None:
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            path = scope.get("path", "")
            route = path if path in self.routes else "other"
            series(REQUEST_SECONDS, route, str(status)).observe(time.perf_counter() - started)


_SERIES: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}


def series(metric: MetricWrapperBase, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: ``labels()`` builds, checks and locks a
    key on every call, ~1 us a time on every request. Only for bounded label values
    (routes, status codes, kinds, reasons, source types)."""
    key = (metric, labels)
    child = _SERIES.get(key)
    if child is None:
        child = _SERIES[key] = metric.labels(*labels)
    return child
