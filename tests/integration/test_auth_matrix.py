"""Every ingest route x (no token, wrong token, token without the scope, right token).

401 without a token or with a wrong one, 403 with a real token that lacks the
route's scope, 2xx with the right one; nothing refused reaches Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.common.auth import SCOPES, create_token, hash_token
from services.ingest.app import create_app
from tests.integration.conftest import wait_until
from tests.integration.test_ingest import (
    bearer,
    event_ids_in,
    field_event,
    open_door,
    read_topic,
    report_event,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    ok: int
    body: Callable[[], Any] | None


ROUTES = [
    Route("POST", "/v1/field-events", "ingest:field", 202, field_event),
    Route("POST", "/v1/reports", "ingest:report", 202, report_event),
    Route("GET", "/v1/dead-letter", "admin", 200, None),
]


@dataclass
class Matrix:
    client: TestClient
    tokens: dict[str, str]  # "right:<scope>", "lacking:<scope>"
    sent: dict[str, list[str]]  # case -> event ids posted with it
    read: Callable[[], Any]


@pytest.fixture(scope="module")
def matrix(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    workdir = tmp_path_factory.mktemp("auth")
    settings, common, _ = open_door(kafka, workdir)
    tokens_file = workdir / "matrix-tokens.json"
    tokens = {}
    for route in ROUTES:
        tokens["right:" + route.scope] = create_token(tokens_file, [route.scope])
        others = [s for s in SCOPES if s != route.scope]
        tokens["lacking:" + route.scope] = create_token(tokens_file, others)
    settings = settings.model_copy(update={"tokens_file": tokens_file})
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        yield Matrix(
            client,
            tokens,
            {},
            lambda: event_ids_in(read_topic(common, common.topic_prefix + "field-events", 1)),
        )


def _headers(case: str, route: Route, tokens: dict[str, str]) -> dict[str, str]:
    right = tokens["right:" + route.scope]
    token_id = right.split("_")[1]
    return {
        "none": {},
        "wrong-secret": bearer(f"bw_{token_id}_{'x' * 32}"),
        "unknown-id": bearer("bw_deadbeef_" + "y" * 32),
        "not-a-token": bearer("hello"),
        "basic-scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "lacking-scope": bearer(tokens["lacking:" + route.scope]),
        "right": bearer(right),
    }[case]


EXPECTED = {
    "none": 401,
    "wrong-secret": 401,
    "unknown-id": 401,
    "not-a-token": 401,
    "basic-scheme": 401,
    "lacking-scope": 403,
    "right": None,  # the route's success status
}


@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("route", ROUTES, ids=[r.path for r in ROUTES])
def test_route_by_token(matrix: Matrix, route: Route, case: str) -> None:
    body = route.body() if route.body else None
    content = orjson.dumps(body) if body is not None else None
    headers = {**_headers(case, route, matrix.tokens), "content-type": "application/json"}
    if body is not None and route.path == "/v1/field-events":
        matrix.sent.setdefault(case, []).append(body["event_id"])

    resp = matrix.client.request(route.method, route.path, content=content, headers=headers)

    expected = EXPECTED[case] or route.ok
    assert resp.status_code == expected, resp.text
    if expected == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in resp.json()["detail"]
    if expected == 403:
        assert resp.json()["detail"] == f"this token lacks the {route.scope!r} scope"


def test_nothing_refused_reaches_kafka(matrix: Matrix) -> None:
    if set(matrix.sent) != set(EXPECTED):
        pytest.skip("needs the whole matrix above in this session")
    in_kafka = matrix.read()
    for case, ids in matrix.sent.items():
        for event_id in ids:
            assert (event_id in in_kafka) == (case == "right"), case


def test_operations_routes_need_no_token(matrix: Matrix) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert matrix.client.get(path).status_code == 200, path


def test_tokens_from_bw_tokens_are_honoured(kafka: str, tmp_path: Path) -> None:
    token = "bw_c0ffee00_" + "s" * 32
    entries = [{"id": "c0ffee00", "hash": hash_token(token), "scopes": ["ingest:field"]}]
    settings, _, _ = open_door(kafka, tmp_path)
    settings = settings.model_copy(
        update={
            "tokens_file": tmp_path / "none.json",
            "tokens": SecretStr(orjson.dumps(entries).decode()),
        }
    )
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        ok = client.post("/v1/field-events", json=field_event(), headers=bearer(token))
        forbidden = client.post("/v1/reports", json=report_event(), headers=bearer(token))

    assert ok.status_code == 202, ok.text
    assert forbidden.status_code == 403
