"""The API's OpenAPI document is usable by integrators: every REST route shows an example."""

from __future__ import annotations

from services.api.app import create_app
from services.api.settings import ApiSettings


def test_every_rest_route_documents_an_example_response() -> None:
    spec = create_app(ApiSettings(auth_enabled=False)).openapi()
    missing = []
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/v1/") or "recent" in path:
            continue
        for method, op in ops.items():
            ok = next(code for code in op["responses"] if code.startswith("2"))
            content = op["responses"][ok].get("content", {}).get("application/json", {})
            if "example" not in content and not content.get("examples"):
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_the_history_route_documents_now_a_past_hour_and_a_bad_at() -> None:
    spec = create_app(ApiSettings(auth_enabled=False)).openapi()
    op = spec["paths"]["/api/v1/state"]["get"]
    examples = op["responses"]["200"]["content"]["application/json"]["examples"]
    assert set(examples) == {"live", "history"}
    past = examples["history"]["value"]
    assert set(past) == {"at", "sections", "countries", "firing_alerts"}
    assert set(past["sections"][0]) == set(examples["live"]["value"]["sections"][0])
    error = op["responses"]["422"]["content"]["application/json"]["example"]
    assert [e["field"] for e in error["errors"]] == ["query.at"]
    assert [p["name"] for p in op["parameters"]] == ["at"]


def test_the_feeds_and_scopes_are_documented() -> None:
    spec = create_app(ApiSettings(auth_enabled=False)).openapi()
    assert "/sse/alerts" in spec["paths"]
    ack = spec["paths"]["/api/v1/alerts/{alert_id}/ack"]["post"]
    assert {"404", "409", "503"} <= set(ack["responses"])
