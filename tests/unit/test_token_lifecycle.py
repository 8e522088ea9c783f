"""Token lifecycle: expiry, list, revoke, rotate; a running store picks changes up from
the file without a restart; "last used" is flushed periodically, not per request."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.cli import main
from services.common.auth import (
    Principal,
    Refusal,
    TokenStore,
    create_token,
    last_used_path,
    list_tokens,
    parse_expiry,
    revoke_token,
    rotate_token,
)
from services.common.errors import ConfigError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["token", *argv])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out.strip(), err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", NOW + timedelta(minutes=90)),
        ("12h", NOW + timedelta(hours=12)),
        ("30d", NOW + timedelta(days=30)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2027-01-31", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-31T18:00:00+02:00", datetime(2027, 1, 31, 16, 0, tzinfo=UTC)),
        ("2027-01-31T18:00:00Z", datetime(2027, 1, 31, 18, 0, tzinfo=UTC)),
    ],
)
def test_expiry_takes_a_duration_or_an_rfc3339_date(text: str, expected: datetime) -> None:
    assert parse_expiry(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "neither a duration"),
        ("0d", "is zero"),
        ("30x", "neither a duration"),
        ("2020-01-01", "in the past"),
        ("2027-01-31T18:00:00", "no UTC offset"),
    ],
)
def test_a_bad_expiry_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_expiry(text, NOW)


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = create_token(path, ["read"], "short", NOW + timedelta(hours=1))
    now = [NOW]
    store = TokenStore.load(path, now=lambda: now[0])

    assert isinstance(store.check(token), Principal)
    now[0] = NOW + timedelta(hours=1)
    refusal = store.check(token)

    assert isinstance(refusal, Refusal) and refusal.reason == "expired"
    assert refusal.token_id == token.split("_")[1]


def test_a_revoked_token_is_refused_by_a_running_store_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = create_token(path, ["read"], "unit 7")
    keep = create_token(path, ["read"], "unit 8")
    clock = Clock()
    store = TokenStore.load(path, clock=clock)
    assert store.verify(token) is not None

    revoke_token(path, token.split("_")[1])
    clock.t += 1.0  # the store looks at the file at most once a second

    refusal = store.check(token)
    assert isinstance(refusal, Refusal) and refusal.reason == "revoked"
    assert store.verify(keep) is not None
    assert store.reloads == 1


def test_a_rotated_token_keeps_its_identity_and_the_old_secret_stops(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    old = create_token(path, ["read", "ack"], "LV duty desk")
    token_id = old.split("_")[1]
    clock = Clock()
    store = TokenStore.load(path, clock=clock)
    principal = store.verify(old)
    assert principal is not None

    new, entry = rotate_token(path, token_id)
    clock.t += 1.0

    assert new != old and new.split("_")[1] == token_id
    assert "hash" not in entry and entry["rotated_at"]
    refusal = store.check(old)
    assert isinstance(refusal, Refusal) and refusal.reason == "wrong secret"
    rotated = store.verify(new)
    assert rotated is not None
    assert (rotated.token_id, rotated.label, rotated.scopes) == (
        token_id,
        "LV duty desk",
        frozenset({"read", "ack"}),
    )
    # An open feed verified with the old secret is no longer current.
    assert not store.is_current(principal)
    assert store.is_current(rotated)


def test_a_file_made_invalid_keeps_the_last_good_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = create_token(path, ["read"])
    clock = Clock()
    store = TokenStore.load(path, clock=clock)

    path.write_text("[{not json", encoding="utf-8")
    clock.t += 1.0

    assert store.verify(token) is not None


def test_last_used_is_flushed_periodically_not_per_request(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = create_token(path, ["read"])
    clock = Clock()
    store = TokenStore.load(path, clock=clock, flush_seconds=30)
    side = last_used_path(path)

    for _ in range(100):
        assert store.verify(token) is not None
    assert not side.exists()  # 100 requests, no write

    clock.t += 30
    assert store.verify(token) is not None
    used = json.loads(side.read_text(encoding="utf-8"))
    assert set(used) == {token.split("_")[1]}
    assert list_tokens(path)[0]["last_used_at"] == used[token.split("_")[1]]
    assert path.read_text(encoding="utf-8").count(token.split("_")[1]) == 1


def test_a_read_only_tokens_file_records_last_use_where_it_is_told(tmp_path: Path) -> None:
    """A tokens file mounted read-only (a Kubernetes Secret): BW_TOKENS_LAST_USED_FILE
    sends "last used" elsewhere, and nothing is written beside the tokens file."""
    secret = tmp_path / "secret"
    path = secret / "tokens.json"
    token = create_token(path, ["read"])
    before = sorted(p.name for p in secret.iterdir())
    elsewhere = tmp_path / "tmp" / "tokens.last-used.json"
    clock = Clock()
    store = TokenStore.load(path, clock=clock, flush_seconds=30, last_used_file=elsewhere)
    assert store.verify(token) is not None
    clock.t += 30
    assert store.verify(token) is not None
    token_id = token.split("_")[1]
    assert set(json.loads(elsewhere.read_text(encoding="utf-8"))) == {token_id}
    assert sorted(p.name for p in secret.iterdir()) == before
    assert list_tokens(path, elsewhere)[0]["last_used_at"] is not None
    assert list_tokens(path)[0]["last_used_at"] is None


def test_the_cli_lifecycle_never_shows_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "tokens.json")
    code, token, err = _cli(
        capsys, "create", "--scopes", "read", "--label", "desk", "--expires", "30d",
        "--tokens-file", path,
    )  # fmt: skip
    assert code == 0 and "expires" in err
    token_id = token.split("_")[1]

    code, out, _ = _cli(capsys, "list", "--tokens-file", path)
    assert code == 0
    assert token_id in out and "desk" in out and "active" in out
    assert token.split("_", 2)[2] not in out and "sha256" not in out

    code, rotated, _ = _cli(capsys, "rotate", token_id, "--tokens-file", path)
    assert code == 0 and rotated.startswith(f"bw_{token_id}_") and rotated != token

    code, out, _ = _cli(capsys, "revoke", token_id, "--tokens-file", path)
    assert code == 0 and f"revoked {token_id}" in out
    code, out, _ = _cli(capsys, "list", "--json", "--tokens-file", path)
    [row] = json.loads(out)
    assert row["status"] == "revoked" and row["expires_at"] and row["rotated_at"]
    assert TokenStore.load(Path(path)).verify(rotated) is None

    code, _, err = _cli(capsys, "revoke", token_id, "--tokens-file", path)
    assert code == 2 and "already revoked" in err
    code, _, err = _cli(capsys, "rotate", "nope", "--tokens-file", path)
    assert code == 2 and "no token with id 'nope'" in err
    code, _, err = _cli(capsys, "create", "--tokens-file", path)
    assert code == 2 and "--scopes is required" in err


def test_revoking_in_the_file_applies_to_a_bw_tokens_entry_with_the_same_id(
    tmp_path: Path,
) -> None:
    from services.common.auth import hash_token

    path = tmp_path / "tokens.json"
    token = create_token(path, ["read"])
    token_id = token.split("_")[1]
    env = json.dumps([{"id": token_id, "hash": hash_token(token), "scopes": ["admin"]}])
    revoke_token(path, token_id)

    refusal = TokenStore.load(path, env).check(token)

    assert isinstance(refusal, Refusal) and refusal.reason == "revoked"


def test_a_country_scoped_token_keeps_its_countries_through_list_and_rotate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "tokens.json")
    code, token, err = _cli(
        capsys, "create", "--scopes", "read,ack", "--countries", "lv", "--tokens-file", path
    )
    assert code == 0 and "only LV" in err
    token_id = token.split("_")[1]
    principal = TokenStore.load(Path(path)).verify(token)
    assert principal is not None and principal.countries == frozenset({"LV"})

    code, out, _ = _cli(capsys, "list", "--tokens-file", path)
    assert "COUNTRIES" in out.splitlines()[0] and " LV " in out
    code, rotated, _ = _cli(capsys, "rotate", token_id, "--tokens-file", path)
    again = TokenStore.load(Path(path)).verify(rotated)
    assert again is not None and again.countries == frozenset({"LV"})
    [row] = list_tokens(Path(path))
    assert row["countries"] == ["LV"]

    unscoped = create_token(Path(path), ["read"])
    every = TokenStore.load(Path(path)).verify(unscoped)
    assert every is not None and every.countries == frozenset()
    assert list_tokens(Path(path))[1]["countries"] == []


@pytest.mark.parametrize(
    ("countries", "scopes", "message"),
    [
        ("LV,XX", "read", "--countries: unknown country code(s) ['XX']; known: LT, LV, PL"),
        ("Latvia", "read", "--countries: unknown country code(s) ['LATVIA']"),
        (",", "read", "--countries: give at least one country code"),
        ("LV", "read,admin", "--countries: an 'admin' token reads dead letters"),
    ],
)
def test_bad_countries_are_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], countries: str, scopes: str, message: str
) -> None:
    path = tmp_path / "tokens.json"
    code, _, err = _cli(
        capsys, "create", "--scopes", scopes, "--countries", countries, "--tokens-file", str(path)
    )
    assert code == 2 and message in err, err
    assert not path.exists()


def test_a_tokens_file_with_bad_countries_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"id": "a", "hash": "x", "scopes": ["read"], "countries": "LV"}]))
    with pytest.raises(ConfigError, match="entry 1: field 'countries': expected a list"):
        TokenStore.load(path)


def test_an_admin_entry_limited_to_countries_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    entry = {"id": "a", "hash": "x", "scopes": ["admin"], "countries": ["LV"]}
    path.write_text(json.dumps([entry]))
    with pytest.raises(ConfigError, match="entry 1: field 'countries': an 'admin' token"):
        TokenStore.load(path)


def test_a_verified_token_is_remembered_and_still_answers_as_the_first_check(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.json"
    token = create_token(path, ["read"], "unit 9", NOW + timedelta(hours=1))
    now = [NOW]
    store = TokenStore.load(path, now=lambda: now[0])

    first = store.check(token)
    now[0] = NOW + timedelta(minutes=5)
    again = store.check(token)

    assert isinstance(first, Principal) and again == first
    assert store.last_used[first.token_id] == NOW + timedelta(minutes=5)
    # Refused guesses are never remembered, so they cannot fill the memory.
    for n in range(50):
        assert isinstance(store.check(f"{token[:-4]}{n:04d}"), Refusal)
    assert len(store._verified) == 1
    now[0] = NOW + timedelta(hours=1)
    refusal = store.check(token)
    assert isinstance(refusal, Refusal) and refusal.reason == "expired"
    assert store._verified == {}


def test_remembered_tokens_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.common.auth as auth

    monkeypatch.setattr(auth, "VERIFIED_CACHE", 3)
    path = tmp_path / "tokens.json"
    tokens = [create_token(path, ["read"], f"unit {n}") for n in range(5)]
    store = TokenStore.load(path)

    for token in tokens:
        assert isinstance(store.check(token), Principal)

    assert list(store._verified) == tokens[2:]  # the oldest went first
    assert all(isinstance(store.check(token), Principal) for token in tokens)


def test_a_remembered_token_is_checked_again_when_its_entry_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = create_token(path, ["read", "ack"], "LV duty desk")
    clock = Clock()
    store = TokenStore.load(path, clock=clock)
    assert isinstance(store.check(token), Principal)

    raw = json.loads(path.read_text(encoding="utf-8"))
    raw[0]["scopes"] = ["read"]  # narrowed by hand: same secret, new entry
    path.write_text(json.dumps(raw), encoding="utf-8")
    clock.t += 1.0

    principal = store.check(token)
    assert isinstance(principal, Principal) and principal.scopes == frozenset({"read"})
    assert store.reloads == 1
