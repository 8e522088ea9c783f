"""Garbage in, no 5xx out, and nothing invalid into Kafka.

- hypothesis: random bytes, random JSON and mutated events (as JSON, arrays and
  NDJSON) never get a 5xx, and every record on the field-events topic afterwards
  is a valid ``FieldEventBatch`` whose events pass ingest's own checks.
- schemathesis: the ingest OpenAPI, exercised against a real uvicorn process on
  127.0.0.1 and the real broker, with a valid token: no 5xx and no response that
  violates the documented status codes, content types, headers or schemas.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.models import FieldEventBatch
from services.common.auth import SCOPES, hash_token, new_token
from services.common.catalogue import Catalogue
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.ingest.validation import check_events
from services.runtime.broker import free_port
from services.runtime.supervisor import wait_http_ready
from tests.integration.conftest import REPO, wait_until
from tests.integration.test_ingest import (
    Door,
    bearer,
    field_event,
    open_door,
    read_topic,
)

pytestmark = pytest.mark.integration

# --- hypothesis ------------------------------------------------------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "event_id",
    "kind",
    "section_id",
    "observed_at",
    "count",
    "source",
    "confidence",
    "location",
    "attributes",
    "schema_version",
]
INTERESTING = st.sampled_from(
    [
        "LV-KRA",
        "EE-NAR",
        "detection",
        "2026-11-22T03:12:00",
        "2999-01-01T00:00:00+00:00",
        "1999-01-01T00:00:00Z",
        0,
        -1,
        10_001,
        2**63,
        {"type": "drone", "id": "D-1"},
        {"lat": 91, "lon": 0},
        {"phone": "1"},
        {f"k{i}": i for i in range(33)},
        "x" * 300,
    ]
)


@st.composite
def mutated_event(draw: st.DrawFn) -> Any:
    event = field_event()
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "add"]))
        key = draw(st.sampled_from(FIELDS))
        if action == "set":
            event[key] = draw(JSON | INTERESTING)
        elif action == "drop":
            event.pop(key, None)
        else:
            event[draw(st.text(min_size=1, max_size=10))] = draw(JSON)
    return event


def _dumps(value: Any) -> bytes:
    # The stdlib, not orjson: it writes integers beyond 64 bits too.
    return json.dumps(value).encode()


@st.composite
def body(draw: st.DrawFn) -> tuple[bytes, str]:
    shape = draw(st.sampled_from(["bytes", "json", "event", "array", "ndjson"]))
    content_type = draw(
        st.sampled_from(["application/json", "application/x-ndjson", "", "text/plain"])
    )
    if shape == "bytes":
        return draw(st.binary(max_size=512)), content_type
    if shape == "json":
        return _dumps(draw(JSON)), content_type
    if shape == "event":
        return _dumps(draw(mutated_event())), "application/json"
    events = draw(st.lists(mutated_event(), min_size=1, max_size=8))
    if shape == "array":
        return _dumps(events), "application/json"
    lines = [_dumps(e) for e in events]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=40)))
    return b"\n".join(lines), "application/x-ndjson"


@pytest.fixture(scope="module")
def fuzz_door(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    settings, common, tokens = open_door(kafka, tmp_path_factory.mktemp("fuzz"))
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ingest ready")
        yield Door(client, common, tokens)


def test_random_bodies_never_5xx_and_only_valid_events_reach_kafka(fuzz_door: Door) -> None:
    accepted: set[str] = set()
    statuses: set[int] = set()

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body())
    def post(sent: tuple[bytes, str]) -> None:
        content, content_type = sent
        headers = bearer(fuzz_door.tokens.field)
        if content_type:
            headers["content-type"] = content_type
        resp = fuzz_door.client.post("/v1/field-events", content=content, headers=headers)
        statuses.add(resp.status_code)
        assert resp.status_code in (202, 413, 415, 422), (resp.status_code, resp.text)
        result = resp.json()
        if resp.status_code == 202:
            accepted.update(result["accepted"])
            assert set(result) == {"accepted", "duplicate", "rejected"}
        else:
            assert result["detail"]

    post()

    assert 202 in statuses and 422 in statuses, statuses
    records = read_topic(fuzz_door.kafka, fuzz_door.topic("field-events"), 1)
    catalogue = Catalogue.load(CommonSettings().sections_file)
    in_kafka: set[str] = set()
    for record in records:
        batch = FieldEventBatch.model_validate_json(record.value)
        assert record.key == batch.section_id.encode()
        assert {e.section_id for e in batch.events} == {batch.section_id}
        checked = check_events(
            [e.model_dump(mode="json") for e in batch.events],
            catalogue,
            datetime.now(UTC).timestamp(),
            300,
            8 * 24 * 3600,
        )
        assert checked.problems == [], checked.problems
        in_kafka.update(str(e.event_id) for e in batch.events)
    assert in_kafka == accepted


# --- schemathesis ----------------------------------------------------------------------


class Uvicorn:
    """The ingest service as it runs in production: a uvicorn process on 127.0.0.1."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "services.ingest.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env={**env, "BW_PORT": str(self.port)},
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_http_ready(
            self.url + "/readyz",
            self.process,
            name="ingest",
            log_path=self.log_path,
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def ingest_server(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uvicorn]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    prefix = f"s{uuid.uuid4().hex[:10]}."
    asyncio.run(ensure_topics(CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix), 3))
    entry = {"id": TOKEN_ID, "hash": hash_token(TOKEN), "scopes": list(SCOPES)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env.update(
        {
            "BW_KAFKA_BOOTSTRAP": kafka,
            "BW_TOPIC_PREFIX": prefix,
            "BW_TOKENS_FILE": str(workdir / "no-tokens.json"),
            "BW_TOKENS": json.dumps([entry]),
            "BW_RATE_LIMIT_PER_SECOND": "0",
            "BW_MAX_BODY_BYTES": str(256 * 1024),
            "PYTHONUNBUFFERED": "1",
        }
    )
    server = Uvicorn(env, workdir / "ingest.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# The document does not depend on the broker: load it from the app itself, so the
# cases are generated at collection time; they are sent to the real process below.
# A token made now (the server below trusts its hash through BW_TOKENS), so the
# schema's own auth settings carry it: schemathesis then knows which header is auth.
TOKEN_ID, TOKEN = new_token()
CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
        "checks": {
            # Refusing schema-violating data with 413 (too many items, too large) is a
            # refusal too.
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 413, 415, 422, 429]
            }
        },
    }
)
# NDJSON bodies are documented as strings: send them as the text they are.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schema = schemathesis.openapi.from_dict(
    create_app(IngestSettings(tokens_file=Path("/nonexistent/tokens.json"))).openapi(),
    config=CONFIG,
).include(path_regex="^/v1/")


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_contract(case: Any, ingest_server: Uvicorn) -> None:
    case.call_and_validate(
        base_url=ingest_server.url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
        timeout=10,
    )
