"""Dead letters keep the original bytes (capped), why, who (token id) and when; the body
reader refuses a too-large body without reading it all."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from starlette.requests import ClientDisconnect, Request

from schemas import export
from schemas.models import DeadLetter
from services.ingest.deadletter import dead_letter
from services.ingest.errors import BodyTooLarge
from services.ingest.routes import Posted, read_capped


def _letter(original: bytes, max_bytes: int = 1000, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "received_at": datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        "route": "/v1/field-events",
        "token_id": "c0ffee00",
        "index": 3,
        "item_id": "7f1d2c3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f",
        "problems": [("count", "Input should be greater than or equal to 1")],
        "content_type": "application/x-ndjson",
        "original": original,
        "max_bytes": max_bytes,
    }
    args.update(overrides)
    return dead_letter(**args)


def test_a_dead_letter_is_a_valid_dead_letter_record() -> None:
    letter = _letter(b'{"count": 0}')
    schema = json.loads(export.path_for("dead-letter").read_text(encoding="utf-8"))

    model = DeadLetter.model_validate(letter)

    assert list(Draft202012Validator(schema).iter_errors(letter)) == []
    assert model.original == '{"count": 0}'
    assert model.original_encoding == "utf-8"
    assert model.original_size == 12 and not model.truncated
    assert model.token_id == "c0ffee00"


def test_bytes_that_are_not_utf8_are_kept_as_base64() -> None:
    raw = b"\xff\xfe\x00garbage"

    letter = _letter(raw, index=None, item_id=None)

    assert letter["original_encoding"] == "base64"
    assert base64.b64decode(letter["original"]) == raw
    DeadLetter.model_validate(letter)


def test_a_long_original_is_truncated_without_splitting_a_character() -> None:
    raw = ("ā" * 100).encode()  # 2 bytes each

    letter = _letter(raw, max_bytes=51)

    assert letter["truncated"] is True
    assert letter["original_size"] == 200
    assert letter["original_encoding"] == "utf-8"
    assert letter["original"] == "ā" * 25


# --- reading a body with a cap --------------------------------------------------------


def _request(chunks: list[bytes], content_length: int | None) -> tuple[Request, list[int]]:
    calls: list[int] = []
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        calls.append(1)
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    headers = [(b"content-length", str(content_length).encode())] if content_length else []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive), calls


async def _read_capped(request: Request, limit: int) -> bytes:
    posted = Posted.of(request)
    return await read_capped(posted.receive, posted.content_length, limit)


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    request, calls = _request([b"x" * 100], content_length=10_000_000)

    with pytest.raises(BodyTooLarge):
        await _read_capped(request, 1000)

    assert calls == []


async def test_a_stream_is_refused_as_soon_as_it_passes_the_limit() -> None:
    request, calls = _request([b"x" * 400] * 100, content_length=None)

    with pytest.raises(BodyTooLarge):
        await _read_capped(request, 1000)

    assert len(calls) == 3  # 1200 bytes read, not 40,000


async def test_a_body_within_the_limit_is_read_whole() -> None:
    request, _ = _request([b"ab", b"cd"], content_length=4)

    assert await _read_capped(request, 4) == b"abcd"


def _replay(messages: list[dict[str, Any]]) -> Any:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    return receive


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.request", "body": b"abc"}],
        [{"type": "http.request"}],
        [
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
        ],
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.disconnect"},
        ],
    ],
    ids=["one message", "no body key", "chunks", "client gone"],
)
async def test_the_body_is_read_as_starlette_reads_it(messages: list[dict[str, Any]]) -> None:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    try:
        expected: bytes | type[Exception] = await Request(scope, _replay(messages)).body()
    except ClientDisconnect:
        expected = ClientDisconnect

    if expected is ClientDisconnect:
        with pytest.raises(ClientDisconnect):
            await read_capped(_replay(messages), "", 1000)
    else:
        assert await read_capped(_replay(messages), "", 1000) == expected
