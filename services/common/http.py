"""What every borderwatch HTTP service shares: health, readiness, metrics, error bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest

# No `_created` series: they double every counter's and histogram's series, and
# no dashboard or rule reads them. Process-wide; every HTTP service imports this.
disable_created_metrics()  # type: ignore[no-untyped-call]


class JSONBytes(Response):
    """A JSON response rendered by orjson (datetimes, UUIDs, dataclasses included)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# FastAPI(telemetry=NO_TELEMETRY): the services export Prometheus metrics, not
# OpenTelemetry, and the bridge costs CPU on every request while it is on.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def add_common_routes(app: FastAPI, ready: Callable[[], bool]) -> None:
    @app.get("/healthz", tags=["ops"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Ready to serve (connected, view built)")
    async def readyz() -> Response:
        ok = ready()
        return JSONBytes({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=True)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p != "body") or "(body)",
                "reason": err["msg"],
            }
            for err in exc.errors()
        ]
        return JSONBytes({"detail": "invalid request", "errors": errors}, status_code=422)
