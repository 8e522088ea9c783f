"""The pure-ASGI door of ``POST /v1/field-events`` answers exactly as the FastAPI route.

Two ingest apps on the real broker, with the same tokens and limits: one with the
door (as ingest runs), one without (every request through Starlette and FastAPI).
Each case is posted to both; status, headers and body must be the same.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from services.common.auth import create_token, revoke_token
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.runtime.broker import free_port
from tests.integration.conftest import wait_until
from tests.integration.test_ingest import Tokens, bearer, field_event, ndjson, open_door

pytestmark = pytest.mark.integration

PATH = "/v1/field-events"


@dataclass
class Pair:
    door: TestClient  # ingest as it runs: POST /v1/field-events through the door
    route: TestClient  # the same app without the door: the FastAPI route answers
    tokens: Tokens
    revoked: str
    door_calls: list[str]


def _spy(client: TestClient, calls: list[str]) -> None:
    """Count the requests the door answers (it must answer every field-events POST)."""
    app: Any = client.app
    inner = app.door
    assert inner is not None

    async def door(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(f"{scope['method']} {scope['path']}")
        await inner(scope, receive, send)

    app.door = door


@contextlib.contextmanager
def _pair(settings: IngestSettings, tokens: Tokens, revoked: str = "") -> Iterator[Pair]:
    calls: list[str] = []
    with (
        TestClient(create_app(settings)) as door,
        TestClient(create_app(settings, fast_path=False)) as route,
    ):
        assert getattr(route.app, "door", None) is None
        _spy(door, calls)
        yield Pair(door, route, tokens, revoked, calls)


@pytest.fixture(scope="module")
def pair(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("fastpath")
    settings, _, tokens = open_door(
        kafka, workdir, max_events=5, max_body_bytes=4096, max_query_bytes=256
    )
    revoked = create_token(tokens.file, ["ingest:field"], "to revoke")
    revoke_token(tokens.file, revoked.split("_")[1])
    with _pair(settings, tokens, revoked) as both:
        _wait_ready(both)
        yield both


def _wait_ready(pair: Pair) -> None:
    for client in (pair.door, pair.route):
        wait_until(lambda c=client: c.get("/readyz").status_code == 200, 30, "ingest ready")


def _answer(resp: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    body = resp.json() if resp.headers.get("content-type") == "application/json" else resp.text
    return resp.status_code, sorted(resp.headers.multi_items()), body


def _both(pair: Pair, send: Callable[[TestClient], httpx.Response]) -> tuple[Any, Any]:
    before = len(pair.door_calls)
    via_door = send(pair.door)
    assert len(pair.door_calls) == before + 1, "the door did not answer"
    via_route = send(pair.route)
    return _answer(via_door), _answer(via_route)


def _post(
    content: bytes | Callable[[], Iterator[bytes]], headers: dict[str, str], query: str = ""
) -> Callable[[TestClient], httpx.Response]:
    """The same request for either app (a streamed body is made afresh for each)."""
    return lambda c: c.post(
        PATH + query, content=content() if callable(content) else content, headers=headers
    )


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


@pytest.mark.parametrize(
    "case",
    [
        "no token",
        "wrong secret",
        "not a token",
        "basic scheme",
        "revoked",
        "lacking scope",
        "form body",
        "content-length over the limit",
        "streamed over the limit",
        "too many events",
        "not JSON",
        "empty body",
        "a JSON string",
        "an empty array",
        "every event invalid",
        "query string too long",
        "a mixed batch",
        "one valid event",
    ],
)
def test_the_door_answers_as_the_route(pair: Pair, case: str) -> None:
    field = bearer(pair.tokens.field)
    json_type = {"content-type": "application/json"}
    no_count = field_event()
    del no_count["count"]
    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    # Fixed ids: the two apps have their own idempotency caches, so both accept them.
    mixed = [
        field_event(event_id=str(uuid.uuid4())),
        no_count,
        field_event(attributes={"passport_no": "LV1"}),
        field_event(section_id="EE-NAR"),
        field_event(observed_at=old),
    ]
    cases: dict[str, Any] = {
        "no token": _post(_json(field_event()), json_type),
        "wrong secret": _post(
            _json(field_event()),
            {**json_type, **bearer(pair.tokens.field.rsplit("_", 1)[0] + "_" + "x" * 32)},
        ),
        "not a token": _post(_json(field_event()), {**json_type, **bearer("hello")}),
        "basic scheme": _post(
            _json(field_event()), {**json_type, "Authorization": "Basic dXNlcjpwYXNz"}
        ),
        "revoked": _post(_json(field_event()), {**json_type, **bearer(pair.revoked)}),
        "lacking scope": _post(_json(field_event()), {**json_type, **bearer(pair.tokens.report)}),
        "form body": _post(
            b"kind=detection", {**field, "content-type": "application/x-www-form-urlencoded"}
        ),
        "content-length over the limit": _post(b"[" + b" " * 5000 + b"]", {**field, **json_type}),
        "streamed over the limit": _post(
            lambda: iter([b"[" + b" " * 3000, b" " * 3000, b"]"]), {**field, **json_type}
        ),
        "too many events": _post(
            ndjson([field_event() for _ in range(6)]),
            {**field, "content-type": "application/x-ndjson"},
        ),
        "not JSON": _post(b"\xff\xfe not json", {**field, **json_type}),
        "empty body": _post(b"  ", {**field, **json_type}),
        "a JSON string": _post(b'"event"', {**field, **json_type}),
        "an empty array": _post(b"[]", {**field, **json_type}),
        "every event invalid": _post(
            _json([no_count, field_event(section_id="EE-NAR")]), {**field, **json_type}
        ),
        "query string too long": _post(
            _json(field_event()), {**field, **json_type}, "?q=" + "x" * 300
        ),
        "a mixed batch": _post(ndjson(mixed), {**field, "content-type": "application/x-ndjson"}),
        "one valid event": _post(_json(field_event()), {**field, **json_type}),
    }

    via_door, via_route = _both(pair, cases[case])

    assert via_door == via_route
    status = via_door[0]
    assert status in (202, 401, 403, 413, 414, 415, 422), via_door
    headers = dict(via_door[1])
    assert headers["x-content-type-options"] == "nosniff"
    if status != 414:
        assert "content-security-policy" in headers


def test_the_rate_limit_is_the_same(kafka: str, tmp_path: Path) -> None:
    settings, _, tokens = open_door(kafka, tmp_path, rate_limit_per_second=0.5, rate_limit_burst=2)
    event = orjson.dumps(field_event())
    headers = {**bearer(tokens.field), "content-type": "application/json"}
    with _pair(settings, tokens) as pair:
        _wait_ready(pair)
        answers = [_both(pair, _post(event, headers)) for _ in range(3)]

    for via_door, via_route in answers:
        assert via_door == via_route
    assert [door[0] for door, _ in answers] == [202, 202, 429]
    assert answers[1][0][2]["duplicate"] == [orjson.loads(event)["event_id"]]
    assert int(dict(answers[2][0][1])["retry-after"]) >= 1


def test_without_a_broker_both_answer_503(tmp_path: Path) -> None:
    tokens = Tokens.create(tmp_path)
    settings = IngestSettings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        tokens_file=tokens.file,
        rate_limit_per_second=0,
        produce_timeout=1.0,
    )
    event = orjson.dumps(field_event())
    with _pair(settings, tokens) as pair:
        via_door, via_route = _both(
            pair, _post(event, {**bearer(tokens.field), "content-type": "application/json"})
        )

    assert via_door == via_route
    assert via_door[0] == 503
    assert dict(via_door[1])["retry-after"] == "2"


def test_other_methods_and_paths_are_left_to_fastapi(pair: Pair) -> None:
    before = len(pair.door_calls)
    auth = bearer(pair.tokens.field)
    for method, path in (
        ("GET", PATH),
        ("PUT", PATH),
        ("POST", PATH + "/"),
        ("POST", "/v1/reports"),
    ):
        answers = [
            _answer(c.request(method, path, headers=auth, follow_redirects=False))
            for c in (pair.door, pair.route)
        ]
        assert answers[0] == answers[1], (method, path)
        assert answers[0][0] in (307, 403, 405), answers[0]
    assert len(pair.door_calls) == before
    document = pair.door.get("/openapi.json").json()
    assert "post" in document["paths"][PATH]
    assert document == pair.route.get("/openapi.json").json()


def test_a_bug_is_the_same_500_and_counted_the_same(
    kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _, tokens = open_door(kafka, tmp_path)
    event = orjson.dumps(field_event())
    headers = {**bearer(tokens.field), "content-type": "application/json"}

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("services.ingest.routes.check_events", broken)
    answers = []
    for fast_path in (True, False):
        with TestClient(
            create_app(settings, fast_path=fast_path), raise_server_exceptions=False
        ) as c:
            wait_until(lambda c=c: c.get("/readyz").status_code == 200, 30, "ingest ready")
            before = _request_count(c, "500")
            answers.append(_answer(c.post(PATH, content=event, headers=headers)))
            answers.append(_request_count(c, "500") - before)

    assert answers[0] == answers[2]
    assert answers[0][0] == 500
    assert answers[1] == answers[3] == 1


def _request_count(client: TestClient, status: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("bw_ingest_request_seconds_count{") and f'status="{status}"' in line:
            if 'route="/v1/field-events"' in line:
                return float(line.split()[-1])
    return 0.0
