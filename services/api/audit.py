"""``GET /api/v1/audit`` (scope ``admin``): the newest records of the append-only
``bw.audit`` topic, which each API replica reads into memory (the newest
``BW_AUDIT_RECENT`` of them; the topic itself keeps a year)."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from schemas.models import AuditAction
from services.api.examples import example
from services.common.auth import Principal, require

router = APIRouter()

AUDIT_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "audit_id": "5d7e0c1a-3b7f-4c2e-9a61-2f4d8b0e6c13",
    "at": "2026-11-22T03:20:11.204Z",
    "action": "token.revoke",
    "outcome": "ok",
    "service": "cli",
    "actor": {"token_id": None, "label": "", "os_user": "ops"},
    "target": "3fa85f64",
    "client": None,
    "detail": {"label": "LV duty desk"},
}


class AuditTrail:
    """The newest audit records seen on the topic, oldest first."""

    def __init__(self, size: int) -> None:
        self._records: deque[dict[str, Any]] = deque(maxlen=size)

    def apply(self, record: dict[str, Any]) -> bool:
        self._records.append(record)
        return False  # nothing for the feeds

    def newest(
        self,
        limit: int,
        action: str | None = None,
        token_id: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        out = []
        for rec in reversed(self._records):
            if action and rec.get("action") != action:
                continue
            actor = rec.get("actor") or {}
            if token_id and token_id not in (actor.get("token_id"), rec.get("target")):
                continue
            if since and str(rec.get("at", "")) < since:
                continue
            out.append(rec)
            if len(out) >= limit:
                break
        return out


@router.get(
    "/api/v1/audit",
    tags=["admin"],
    summary="The newest audit records, newest first (scope `admin`)",
    responses={
        **example([AUDIT_EXAMPLE]),
        401: {"description": "No valid token"},
        403: {"description": "The token lacks the `admin` scope"},
    },
)
async def read_audit(
    request: Request,
    _: Annotated[Principal, Depends(require("admin"))],
    action: AuditAction | None = None,
    token_id: Annotated[
        str | None,
        Query(pattern=r"^[0-9a-zA-Z]{1,32}$", description="Actor or target token id"),
    ] = None,
    since: Annotated[datetime | None, Query(description="At or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    trail: AuditTrail = request.app.state.audit_trail
    when = None
    if since is not None:
        when = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
    return trail.newest(
        limit,
        action.value if action else None,
        token_id,
        when.isoformat().replace("+00:00", "Z") if when else None,
    )
