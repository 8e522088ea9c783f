"""Bearer tokens: `borderwatch token create` prints a token once and stores only its hash;
verification is by hash, per token id, in constant time."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import main
from services.common.auth import TokenStore, create_token, hash_token
from services.common.errors import ConfigError


def _create(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["token", "create", *argv])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out.strip(), err


def test_token_create_prints_a_token_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"

    code, token, err = _create(
        capsys, "--scopes", "ingest:field, read", "--label", "unit 7", "--tokens-file", str(path)
    )

    assert code == 0
    assert token.startswith("bw_") and len(token) > 30
    assert "shown only now" in err
    [entry] = json.loads(path.read_text(encoding="utf-8"))
    assert entry["hash"] == hash_token(token)
    assert entry["scopes"] == ["ingest:field", "read"]
    assert entry["label"] == "unit 7"
    assert token not in path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    principal = TokenStore.load(path).verify(token)
    assert principal is not None
    assert principal.token_id == entry["id"] == token.split("_")[1]
    assert principal.scopes == {"ingest:field", "read"}


def test_token_create_appends_and_every_token_stays_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    _, first, _ = _create(capsys, "--scopes", "admin", "--tokens-file", str(path))
    _, second, _ = _create(capsys, "--scopes", "ingest:report", "--tokens-file", str(path))

    store = TokenStore.load(path)

    assert first != second
    assert store.verify(first) is not None and store.verify(second) is not None


def test_token_create_uses_bw_tokens_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.json"
    monkeypatch.setenv("BW_TOKENS_FILE", str(path))

    code, token, _ = _create(capsys, "--scopes", "read")

    assert code == 0
    assert TokenStore.load(path).verify(token) is not None


def test_an_unknown_scope_is_refused_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"

    code, out, err = _create(capsys, "--scopes", "read,superuser", "--tokens-file", str(path))

    assert code == 2
    assert out == ""
    assert "superuser" in err and "ingest:field" in err
    assert not path.exists()


def test_the_console_script_works(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    exe = Path(sys.executable).with_name("borderwatch")

    result = subprocess.run(
        [str(exe), "token", "create", "--scopes", "ack", "--tokens-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert TokenStore.load(path).verify(result.stdout.strip()) is not None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "bw_",
        "bw_abc",
        "xx_abcd1234_secret",
        "bw_abcd1234_wrong-secret",
        "bw_ffffffff_secret",
        "bw_abcd1234_secret ",
    ],
)
def test_wrong_tokens_are_not_verified(token: str) -> None:
    good = "bw_abcd1234_secret"
    store = TokenStore({"abcd1234": (hash_token(good), frozenset({"read"}))})

    assert store.verify(good) is not None
    assert store.verify(token) is None


def test_bw_tokens_entries_are_added_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    from_file = create_token(path, ["read"])
    env_token = "bw_0000beef_" + "z" * 30
    env = json.dumps([{"id": "0000beef", "hash": hash_token(env_token), "scopes": ["admin"]}])

    store = TokenStore.load(path, env)

    assert store.verify(from_file) is not None
    principal = store.verify(env_token)
    assert principal is not None and principal.scopes == {"admin"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "BW_TOKENS: not valid JSON"),
        ('{"id": "x"}', "expected a JSON list"),
        ('[{"id": "x", "hash": "h"}]', "field 'scopes' is missing"),
        ('[{"id": "x", "hash": "h", "scopes": "admin"}]', "expected a list"),
        ('[{"id": "x", "hash": "h", "scopes": ["root"]}]', "unknown ['root']"),
    ],
)
def test_bad_token_entries_stop_start_up_with_a_clear_message(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TokenStore.load(None, raw)
