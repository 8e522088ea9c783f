"""Bearer tokens with scopes, stored as hashes.

A token looks like ``bw_<id>_<secret>``. The tokens file (JSON) keeps only
``sha256(token)`` with the token id and scopes; a request's token is hashed
and compared in constant time with the stored hash of its id. ``borderwatch
token create`` writes new entries; ``BW_TOKENS`` may also carry entries as
JSON (for containers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.errors import ConfigError

SCOPES = ("ingest:field", "ingest:report", "read", "ack", "admin")


@dataclass(frozen=True)
class Principal:
    token_id: str
    scopes: frozenset[str]


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(token id, token)."""
    token_id = secrets.token_hex(4)
    return token_id, f"bw_{token_id}_{secrets.token_urlsafe(24)}"


def _entries(raw: Any, where: str) -> dict[str, tuple[str, frozenset[str]]]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a JSON list of tokens")
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: entry {i + 1}: expected an object")
        for field in ("id", "hash", "scopes"):
            if field not in entry:
                raise ConfigError(f"{where}: entry {i + 1}: field {field!r} is missing")
        if not isinstance(entry["scopes"], list):
            raise ConfigError(f"{where}: entry {i + 1}: field 'scopes': expected a list")
        bad = set(entry["scopes"]) - set(SCOPES)
        if bad:
            raise ConfigError(
                f"{where}: entry {i + 1}: field 'scopes': unknown {sorted(bad)}; "
                f"known: {', '.join(SCOPES)}"
            )
        out[str(entry["id"])] = (str(entry["hash"]), frozenset(entry["scopes"]))
    return out


class TokenStore:
    def __init__(self, entries: dict[str, tuple[str, frozenset[str]]]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path | None, env_json: str | None = None) -> TokenStore:
        entries: dict[str, tuple[str, frozenset[str]]] = {}
        if path is not None and path.exists():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
            entries.update(_entries(raw, str(path)))
        if env_json:
            try:
                raw = json.loads(env_json)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"BW_TOKENS: not valid JSON: {exc}") from exc
            entries.update(_entries(raw, "BW_TOKENS"))
        return cls(entries)

    def verify(self, token: str) -> Principal | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "bw":
            return None
        entry = self._entries.get(parts[1])
        if entry is None:
            # Same work as a real comparison, so timing does not reveal unknown ids.
            hmac.compare_digest(hash_token(token), hash_token("bw_x_x"))
            return None
        stored, scopes = entry
        if not hmac.compare_digest(hash_token(token), stored):
            return None
        return Principal(parts[1], scopes)


def create_token(path: Path, scopes: list[str], label: str = "") -> str:
    """Create a token with ``scopes``, store its hash in ``path`` and return it."""
    bad = set(scopes) - set(SCOPES)
    if bad or not scopes:
        raise ConfigError(f"--scopes: unknown {sorted(bad)}; choose from {', '.join(SCOPES)}")
    token_id, token = new_token()
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    existing.append(
        {
            "id": token_id,
            "hash": hash_token(token),
            "scopes": sorted(scopes),
            "label": label,
            "created_at": datetime.now(UTC).isoformat(),
        }
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(existing, indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return token


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))


def token_from_request(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


# Declares the scheme in the OpenAPI document; the header is read by token_from_request.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer bw_<id>_<secret>` (`borderwatch token create`).",
)


def require(
    scope: str,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """FastAPI dependency: the request's principal, which must hold ``scope``.

    The app keeps ``app.state.tokens`` (a TokenStore) and ``app.state.auth_enabled``.
    401 without a token or with a wrong one, 403 when the token lacks ``scope``.
    """

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> Principal:
        if not request.app.state.auth_enabled:
            return ANONYMOUS
        token = token_from_request(request)
        principal = request.app.state.tokens.verify(token) if token else None
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scope not in principal.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"this token lacks the {scope!r} scope"
            )
        return cast(Principal, principal)

    return dependency
