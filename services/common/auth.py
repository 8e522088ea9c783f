"""Bearer tokens with scopes, stored as hashes, with a lifecycle.

A token looks like ``bw_<id>_<secret>``. The tokens file (JSON) keeps only
``sha256(token)`` with the token id, label, scopes and its lifecycle
(``created_at``, optional ``expires_at``, ``revoked_at``, ``rotated_at``); a
request's token is hashed and compared in constant time with the stored hash
of its id. ``borderwatch token create|list|revoke|rotate`` edits the file under
a lock; ``BW_TOKENS`` may also carry entries as JSON (for containers).

Every process that verifies tokens watches the file: at most once per
``reload_seconds`` (1 s) a request makes it ``stat()`` the file and reload it
when it changed, so a revoked or rotated token is refused within about a
second, without a restart, and without any background task or Kafka round
trip. Expiry is checked on every request against the clock.

A token that verified is remembered by its exact text (a bounded map, cleared
on every reload), so the next request with it skips parsing and hashing; it is
still refused the moment its entry is revoked, rotated, removed or expired. Only
verified tokens are remembered, so refused guesses cost no memory, and a lookup
reveals nothing about a secret it does not already hold (a keyed string hash).

"Last used" is kept in memory and written at most every ``flush_seconds`` (30 s)
to a sidecar file ``<tokens file>.last-used.json`` (merged under a lock with the
other processes' figures), never once per request; it never touches the tokens
file itself, so it triggers no reloads.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.errors import ConfigError
from services.common.ratelimit import RateLimiter

log = logging.getLogger(__name__)

SCOPES = ("ingest:field", "ingest:report", "read", "ack", "admin")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's identity (id and label), never its secret."""

    token_id: str
    scopes: frozenset[str]
    label: str = ""
    expires_at: datetime | None = None
    # The countries whose data this token may see and post (``--countries LV``);
    # empty: every country. Checked by the routes and feeds that serve or take
    # per-country data.
    countries: frozenset[str] = frozenset()
    # The stored hash the token matched: a rotation changes it, so an open feed can
    # tell that its token is no longer the current one. Not a secret, but kept out
    # of reprs and logs anyway.
    fingerprint: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class TokenEntry:
    id: str
    hash: str = field(repr=False)
    scopes: frozenset[str]
    label: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rotated_at: datetime | None = None
    countries: frozenset[str] = frozenset()

    def refusal(self, now: datetime) -> str | None:
        """Why this entry cannot be used at ``now`` (None: it can)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return None

    def principal(self) -> Principal:
        return Principal(
            self.id, self.scopes, self.label, self.expires_at, self.countries, self.hash
        )


@dataclass(frozen=True)
class Refusal:
    """A token that was not accepted and why (``missing``, ``malformed``,
    ``unknown``, ``wrong secret``, ``revoked``, ``expired``)."""

    reason: str
    token_id: str | None = None  # the id the caller claimed, when it had one


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token(token_id: str | None = None) -> tuple[str, str]:
    """(token id, token)."""
    token_id = token_id or secrets.token_hex(4)
    return token_id, f"bw_{token_id}_{secrets.token_urlsafe(24)}"


def token_id_of(token: str) -> str | None:
    """The id part of a well-formed token (not a secret), else None."""
    parts = token.split("_", 2)
    if len(parts) == 3 and parts[0] == "bw" and re.fullmatch(r"[0-9a-zA-Z]{1,32}", parts[1]):
        return parts[1]
    return None


def _when(value: Any, where: str, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: field {name!r}: expected an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: field {name!r}: not an RFC 3339 date-time: {exc}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _entries(raw: Any, where: str) -> dict[str, TokenEntry]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a JSON list of tokens")
    out: dict[str, TokenEntry] = {}
    for i, entry in enumerate(raw):
        at = f"{where}: entry {i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected an object")
        for name in ("id", "hash", "scopes"):
            if name not in entry:
                raise ConfigError(f"{at}: field {name!r} is missing")
        if not isinstance(entry["scopes"], list):
            raise ConfigError(f"{at}: field 'scopes': expected a list")
        bad = set(entry["scopes"]) - set(SCOPES)
        if bad:
            raise ConfigError(
                f"{at}: field 'scopes': unknown {sorted(bad)}; known: {', '.join(SCOPES)}"
            )
        countries = entry.get("countries") or []
        if not isinstance(countries, list) or not all(
            isinstance(c, str) and _COUNTRY.fullmatch(c) for c in countries
        ):
            raise ConfigError(
                f"{at}: field 'countries': expected a list of two-letter country codes "
                '(e.g. ["LV"]), or no field for every country'
            )
        if countries and "admin" in entry["scopes"]:
            raise ConfigError(
                f"{at}: field 'countries': an 'admin' token sees dead letters and the "
                "audit trail of every country; it cannot be limited to countries"
            )
        out[str(entry["id"])] = TokenEntry(
            id=str(entry["id"]),
            hash=str(entry["hash"]),
            scopes=frozenset(entry["scopes"]),
            label=str(entry.get("label") or ""),
            created_at=_when(entry.get("created_at"), at, "created_at"),
            expires_at=_when(entry.get("expires_at"), at, "expires_at"),
            revoked_at=_when(entry.get("revoked_at"), at, "revoked_at"),
            rotated_at=_when(entry.get("rotated_at"), at, "rotated_at"),
            countries=frozenset(countries),
        )
    return out


def _read_file(path: Path) -> dict[str, TokenEntry]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    return _entries(raw, str(path))


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# datetime.now(UTC) without a Python frame of its own (called on every check).
_utc_now = functools.partial(datetime.now, UTC)

# Verified tokens a TokenStore remembers at most (a process serves a few tokens;
# the bound keeps a flood of distinct valid tokens from growing it without end).
VERIFIED_CACHE = 1024


def last_used_path(tokens_file: Path) -> Path:
    return tokens_file.with_name(tokens_file.name + ".last-used.json")


class TokenStore:
    """The tokens a process accepts; reloads its file when the file changes."""

    def __init__(
        self,
        entries: dict[str, TokenEntry] | dict[str, tuple[str, frozenset[str]]],
        *,
        path: Path | None = None,
        env_entries: dict[str, TokenEntry] | None = None,
        reload_seconds: float = 1.0,
        flush_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
        last_used_file: Path | None = None,
    ) -> None:
        self._entries: dict[str, TokenEntry] = {
            k: v if isinstance(v, TokenEntry) else TokenEntry(k, v[0], v[1])
            for k, v in entries.items()
        }
        self._path = path
        # Where "last used" goes: beside the tokens file unless set (a read-only
        # tokens file, e.g. a Kubernetes Secret, needs a writable place).
        self._last_used_file = last_used_file
        self._env = env_entries or {}
        self._reload_seconds = reload_seconds
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._now = now
        self._file_key = _file_key(path) if path is not None else None
        self._checked = clock()
        self._flushed = clock()
        self.last_used: dict[str, datetime] = {}
        self._unflushed = False
        self.reloads = 0
        # Exact token text -> the entry it verified against and its principal.
        self._verified: dict[str, tuple[TokenEntry, Principal]] = {}

    @classmethod
    def load(cls, path: Path | None, env_json: str | None = None, **options: Any) -> TokenStore:
        entries: dict[str, TokenEntry] = {}
        if path is not None and path.exists():
            entries.update(_read_file(path))
        env: dict[str, TokenEntry] = {}
        if env_json:
            try:
                raw = json.loads(env_json)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"BW_TOKENS: not valid JSON: {exc}") from exc
            env = _entries(raw, "BW_TOKENS")
        # The file wins over BW_TOKENS for the same id, so `token revoke` always applies.
        return cls({**env, **entries}, path=path, env_entries=env, **options)

    # --- watching the file ---------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Reload the file if it changed (checked at most every ``reload_seconds``
        unless ``force``); True when it was reloaded. A file that became invalid is
        logged and the last good entries are kept: the CLI replaces the file
        atomically, so this is a hand edit in progress."""
        if self._path is None:
            return False
        now = self._clock()
        if not force and now - self._checked < self._reload_seconds:
            return False
        self._checked = now
        key = _file_key(self._path)
        if key == self._file_key:
            return False
        try:
            entries = _read_file(self._path) if key is not None else {}
        except (ConfigError, OSError) as exc:
            log.error("tokens file changed but cannot be used, keeping the last good one: %s", exc)
            return False
        self._file_key = key
        self._entries = {**self._env, **entries}
        self._verified.clear()
        self.reloads += 1
        log.info("tokens file reloaded: %d tokens", len(self._entries))
        return True

    # --- verifying -------------------------------------------------------------------

    def check(self, token: str | None) -> Principal | Refusal:
        """The principal of ``token``, or why it is refused."""
        self.refresh()
        if not token:
            return Refusal("missing")
        remembered = self._remembered(token)
        if remembered is not None:
            return remembered
        token_id = token_id_of(token)
        if token_id is None:
            return Refusal("malformed")
        entry = self._entries.get(token_id)
        if entry is None:
            # Same work as a real comparison, so timing does not reveal unknown ids.
            hmac.compare_digest(hash_token(token), hash_token("bw_x_x"))
            return Refusal("unknown", token_id)
        if not hmac.compare_digest(hash_token(token), entry.hash):
            return Refusal("wrong secret", token_id)
        now = self._now()
        why = entry.refusal(now)
        if why is not None:
            return Refusal(why, token_id)
        self._used(token_id, now)
        principal = entry.principal()
        if len(self._verified) >= VERIFIED_CACHE:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (entry, principal)
        return principal

    def _remembered(self, token: str) -> Principal | None:
        """The principal of a token that verified before, if its entry is unchanged
        (not replaced by a reload: revoked, rotated, edited, removed) and not expired."""
        known = self._verified.get(token)
        if known is None:
            return None
        entry, principal = known
        if self._entries.get(entry.id) is entry:
            now = self._now()
            if entry.refusal(now) is None:
                self._used(entry.id, now)
                return principal
        del self._verified[token]  # the full check says why
        return None

    def verify(self, token: str) -> Principal | None:
        result = self.check(token)
        return result if isinstance(result, Principal) else None

    def is_current(self, principal: Principal) -> bool:
        """Whether ``principal``'s token is still accepted (not revoked, expired or
        rotated since it was verified): open feeds are closed when it is not."""
        self.refresh()
        entry = self._entries.get(principal.token_id)
        return (
            entry is not None
            and entry.hash == principal.fingerprint
            and entry.refusal(self._now()) is None
        )

    # --- last used ---------------------------------------------------------------------

    def _used(self, token_id: str, now: datetime) -> None:
        self.last_used[token_id] = now
        self._unflushed = True
        self.maybe_flush()

    def maybe_flush(self) -> None:
        """Flush "last used" if ``flush_seconds`` have passed since the last flush."""
        if self._unflushed and self._clock() - self._flushed >= self._flush_seconds:
            self.flush_last_used()

    def flush_last_used(self) -> None:
        """Merge this process's "last used" times into the sidecar file."""
        self._flushed = self._clock()
        if self._path is None or not self._unflushed:
            return
        self._unflushed = False
        try:
            merge_last_used(self._path, self.last_used, self._last_used_file)
        except OSError as exc:  # a read-only mount must not fail requests
            log.warning(
                "cannot record last use of tokens in %s: %s (BW_TOKENS_LAST_USED_FILE sets "
                "a writable place)",
                self._last_used_file or last_used_path(self._path),
                exc,
            )


# --- the tokens file, as the CLI edits it ----------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _raw(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    raw = json.loads(path.read_text(encoding="utf-8"))
    _entries(raw, str(path))  # validate before changing anything
    return list(raw)


def merge_last_used(tokens_file: Path, used: dict[str, datetime], side: Path | None = None) -> None:
    side = side or last_used_path(tokens_file)
    with _locked(side):
        try:
            current = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
        except json.JSONDecodeError:
            current = {}
        for token_id, when in used.items():
            iso = when.isoformat()
            if current.get(token_id, "") < iso:
                current[token_id] = iso
        _write_json(side, current)


_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``--expires``: a duration (``90m``, ``12h``, ``30d``, ``2w``) from now, or an
    RFC 3339 date (``2027-01-31``, midnight UTC) or date-time with an offset."""
    now = now or datetime.now(UTC)
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        amount = int(match.group(1))
        if amount == 0:
            raise ConfigError(f"--expires: {text!r} is zero; give a positive duration")
        return now + timedelta(**{_UNITS[match.group(2)]: amount})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--expires: {text!r} is neither a duration (90m, 12h, 30d, 2w) "
            "nor an RFC 3339 date or date-time (2027-01-31, 2027-01-31T18:00:00+02:00)"
        ) from None
    if len(text) > 10 and when.tzinfo is None:
        raise ConfigError(f"--expires: {text!r} has no UTC offset (add Z or +02:00)")
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise ConfigError(f"--expires: {text!r} is in the past")
    return when


def _check_scopes(scopes: list[str]) -> None:
    bad = set(scopes) - set(SCOPES)
    if bad or not scopes:
        raise ConfigError(f"--scopes: unknown {sorted(bad)}; choose from {', '.join(SCOPES)}")


def check_countries(
    countries: list[str], known: list[str] | None, scopes: list[str] | None = None
) -> list[str]:
    """``--countries``: upper-cased, known to the catalogue (``known``, when given), and
    not with ``admin`` (dead letters and the audit trail are not per country)."""
    out = sorted({c.strip().upper() for c in countries if c.strip()})
    bad = [c for c in out if not _COUNTRY.fullmatch(c) or (known is not None and c not in known)]
    if not out:
        raise ConfigError("--countries: give at least one country code (e.g. --countries LV)")
    if bad:
        choices = f"; known: {', '.join(known)}" if known is not None else ""
        raise ConfigError(f"--countries: unknown country code(s) {bad}{choices}")
    if scopes is not None and "admin" in scopes:
        raise ConfigError(
            "--countries: an 'admin' token reads dead letters and the audit trail of "
            "every country; create the admin token without --countries"
        )
    return out


def create_token(
    path: Path,
    scopes: list[str],
    label: str = "",
    expires_at: datetime | None = None,
    countries: list[str] | None = None,
) -> str:
    """Create a token with ``scopes`` (limited to ``countries`` when given), store its
    hash in ``path`` and return it."""
    _check_scopes(scopes)
    if countries:
        countries = check_countries(countries, None, scopes)
    token_id, token = new_token()
    with _locked(path):
        existing = _raw(path)
        while any(e.get("id") == token_id for e in existing):
            token_id, token = new_token()
        existing.append(
            {
                "id": token_id,
                "hash": hash_token(token),
                "scopes": sorted(scopes),
                "label": label,
                "created_at": datetime.now(UTC).isoformat(),
                "expires_at": expires_at.isoformat() if expires_at else None,
                **({"countries": countries} if countries else {}),
            }
        )
        _write_json(path, existing)
    return token


def _find(existing: list[dict[str, Any]], token_id: str, path: Path) -> dict[str, Any]:
    for entry in existing:
        if entry.get("id") == token_id:
            return entry
    raise ConfigError(f"no token with id {token_id!r} in {path} (see `borderwatch token list`)")


def revoke_token(path: Path, token_id: str) -> dict[str, Any]:
    """Mark ``token_id`` revoked (kept in the file for the record); its entry."""
    with _locked(path):
        existing = _raw(path)
        entry = _find(existing, token_id, path)
        if entry.get("revoked_at"):
            raise ConfigError(f"token {token_id!r} was already revoked at {entry['revoked_at']}")
        entry["revoked_at"] = datetime.now(UTC).isoformat()
        _write_json(path, existing)
    return {k: v for k, v in entry.items() if k != "hash"}


def rotate_token(
    path: Path, token_id: str, expires_at: datetime | None = None
) -> tuple[str, dict[str, Any]]:
    """A new secret for ``token_id`` (same id, label, scopes and countries: the same
    identity in the audit trail); the old secret stops working. Returns (new token, entry)."""
    with _locked(path):
        existing = _raw(path)
        entry = _find(existing, token_id, path)
        if entry.get("revoked_at"):
            raise ConfigError(f"token {token_id!r} is revoked; create a new one instead")
        now = datetime.now(UTC)
        if expires_at is not None:
            entry["expires_at"] = expires_at.isoformat()
        current_expiry = _when(entry.get("expires_at"), str(path), "expires_at")
        if current_expiry is not None and current_expiry <= now:
            raise ConfigError(
                f"token {token_id!r} expired at {entry['expires_at']}; "
                "rotate it with a new --expires, or create a new one"
            )
        _, token = new_token(token_id)
        entry["hash"] = hash_token(token)
        entry["rotated_at"] = now.isoformat()
        _write_json(path, existing)
    return token, {k: v for k, v in entry.items() if k != "hash"}


def list_tokens(path: Path, last_used_file: Path | None = None) -> list[dict[str, Any]]:
    """Every token's id, label, scopes, countries (empty: all), created, expires,
    revoked, last used; never a hash or a secret."""
    existing = _raw(path)
    side = last_used_file or last_used_path(path)
    try:
        used = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
    except json.JSONDecodeError:
        used = {}
    now = datetime.now(UTC)
    out = []
    for raw, entry in zip(existing, _entries(existing, str(path)).values(), strict=True):
        out.append(
            {
                "id": raw["id"],
                "label": raw.get("label") or "",
                "scopes": sorted(raw["scopes"]),
                "countries": sorted(entry.countries),
                "created_at": raw.get("created_at"),
                "expires_at": raw.get("expires_at"),
                "revoked_at": raw.get("revoked_at"),
                "rotated_at": raw.get("rotated_at"),
                "last_used_at": used.get(raw["id"]),
                "status": entry.refusal(now) or "active",
            }
        )
    return out


ANONYMOUS = Principal("anonymous", frozenset(SCOPES), "auth disabled")


def token_from_header(authorization: str) -> str | None:
    """The token of an ``Authorization`` header's value (``Bearer <token>``), else None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def token_from_request(request: Request) -> str | None:
    return token_from_header(request.headers.get("authorization", ""))


# Declares the scheme in the OpenAPI document; the header is read by token_from_request.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer bw_<id>_<secret>` (`borderwatch token create`).",
)

# Called with (request-or-websocket, refusal) when a token is refused; the app sets
# ``app.state.on_refused`` to record it in the audit trail.
OnRefused = Callable[[Any, Refusal], None]


def authenticate(app_state: Any, token: str | None, conn: Any) -> Principal | Refusal:
    """The principal of ``token`` for an app (anonymous with auth off); a refusal is
    reported to ``app_state.on_refused`` if the app has one."""
    if not app_state.auth_enabled:
        return ANONYMOUS
    result: Principal | Refusal = app_state.tokens.check(token)
    if isinstance(result, Refusal):
        _report(app_state, conn, result)
    return result


def _report(app_state: Any, conn: Any, refusal: Refusal) -> None:
    hook: OnRefused | None = getattr(app_state, "on_refused", None)
    if hook is not None:
        hook(conn, refusal)


def admit_token(
    app_state: Any, token: str | None, scope: str, conn: Callable[[], Any]
) -> Principal:
    """What :func:`require`'s dependency checks, for a token already read: the principal
    of ``token``, which must hold ``scope`` (HTTPException 401 without a token or with
    a wrong, revoked or expired one, 403 when it lacks ``scope``), then
    ``app_state.limiter`` when the app keeps one (429 beyond the token's rate).

    ``conn()`` makes the request (or websocket) a refusal is reported with, only when
    there is one: ingest's pure-ASGI door builds no Request for an admitted token."""
    if not app_state.auth_enabled:
        result: Principal | Refusal = ANONYMOUS
    else:
        result = app_state.tokens.check(token)
    if isinstance(result, Refusal):
        _report(app_state, conn(), result)
        detail = "missing or invalid bearer token (Authorization: Bearer <token>)"
        if result.reason in ("revoked", "expired"):
            detail = f"this bearer token is {result.reason}"
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=detail,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if scope not in result.scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"this token lacks the {scope!r} scope"
        )
    # The API keeps its per-token REST limiter here (ingest applies its own).
    limiter: RateLimiter | None = getattr(app_state, "limiter", None)
    if limiter is not None:
        wait = limiter.take(result.token_id)
        if wait > 0:
            counted: Callable[[], None] | None = getattr(app_state, "on_rate_limited", None)
            if counted is not None:
                counted()
            retry = max(1, math.ceil(wait))
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"more than {limiter.rate:g} requests/s with this token; "
                f"retry after {retry}s",
                headers={"Retry-After": str(retry)},
            )
    return result


def admitted(request: Request, scope: str) -> Principal:
    """:func:`admit_token` for a request: its bearer token, refusals reported with it."""
    return admit_token(request.app.state, token_from_request(request), scope, lambda: request)


def require(
    scope: str,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """FastAPI dependency: the request's principal, which must hold ``scope``.

    The app keeps ``app.state.tokens`` (a TokenStore) and ``app.state.auth_enabled``,
    optionally ``app.state.limiter`` (a RateLimiter: 429 beyond the token's rate).
    401 without a token or with a wrong, revoked or expired one, 403 when the token
    lacks ``scope``.
    """

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> Principal:
        return admitted(request, scope)

    return dependency
