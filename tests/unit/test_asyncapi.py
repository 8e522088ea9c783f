"""schemas/asyncapi.yaml is a valid AsyncAPI 3.0.0 document and tells the truth.

Valid: checked against the official AsyncAPI JSON Schema, from the npm package
``@asyncapi/specs`` that ``make install`` fetches into ``.tools/`` (no network
here). True: every local ``$ref`` resolves, every topic of ``topic_specs()`` is a
channel with its partitions and configuration, and the feed messages, query
parameters and close codes are the ones services/api emits and reads; messages
built by the API's own code validate against the document's message schemas.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import orjson
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from schemas.models import SEVERITY_ORDER
from services.aggregator.rules import ThresholdRule, evaluate
from services.aggregator.state import BatchOutcome, Engine, SectionAggregate
from services.api import examples, feeds, routes
from services.api.feeds import Filter, Hub
from services.api.view import View
from services.common.catalogue import Catalogue
from services.common.settings import CommonSettings
from services.common.topics import topic_specs
from services.reports.assessment import assess
from tests.unit.factories import NOW, field_event, iso, section

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
DOCUMENT = SCHEMAS / "asyncapi.yaml"
SPECS = REPO / ".tools" / "node_modules" / "@asyncapi" / "specs"

# Topic suffix -> (contract file, Kafka key field), as the services produce them.
TOPIC_CONTRACTS = {
    "field-events": ("field-event-batch", "section_id"),
    "report-events": ("report-event", "country"),
    "dead-letter": ("dead-letter", "token_id"),
    "section-state": ("section-state", "section_id"),
    "section-hours": ("section-hour", "key"),
    "alerts": ("alert", "alert_id"),
    "alert-acks": ("alert-ack", "alert_id"),
    "report-analysis": ("report-analysis", "country"),
    "assessment": ("assessment", "country"),
    "audit": ("audit", "action"),
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def official_schema(doc: dict[str, Any]) -> dict[str, Any]:
    path = SPECS / "schemas" / f"{doc['asyncapi']}.json"
    if not path.exists():
        pytest.fail(
            f"the official AsyncAPI JSON Schema is missing ({path.relative_to(REPO)}): "
            "run `make install`, which fetches the pinned npm package @asyncapi/specs "
            "into .tools/",
            pytrace=False,
        )
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _walk(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``$ref`` in ``node`` as (where, ref)."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out.append((path or "/", value))
            else:
                out += _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _walk(value, f"{path}/{i}")
    return out


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


def _pointer(document: Any, fragment: str) -> Any:
    node = document
    for token in fragment.lstrip("/").split("/") if fragment else []:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and set(node) == {"$ref"} and node["$ref"].startswith("#"):
        node = _pointer(doc, node["$ref"][1:])
    return node


def _leaves(error: Any) -> list[str]:
    if not error.context:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return [f"{where}: {error.message[:200]}"]
    return [leaf for sub in error.context for leaf in _leaves(sub)]


# --- the document is valid AsyncAPI ----------------------------------------------------


def test_document_is_valid_against_the_official_asyncapi_schema(
    doc: dict[str, Any], official_schema: dict[str, Any]
) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert official_schema["$schema"].startswith("http://json-schema.org/draft-07/schema")

    errors = list(Draft7Validator(official_schema).iter_errors(doc))

    problems = sorted({leaf for error in errors for leaf in _leaves(error)})
    assert not errors, "schemas/asyncapi.yaml is not valid AsyncAPI 3.0.0:\n" + "\n".join(problems)


def test_the_official_schema_really_refuses_a_broken_document(
    doc: dict[str, Any], official_schema: dict[str, Any]
) -> None:
    # Guards the check above: a validator that resolved nothing would pass anything.
    broken = json.loads(json.dumps(doc))
    broken["operations"]["api-push-feed"]["action"] = "publish"  # AsyncAPI 2.x wording
    broken["channels"]["alerts"]["bindings"]["kafka"]["partitions"] = 0

    assert not Draft7Validator(official_schema).is_valid(broken)


# --- references ------------------------------------------------------------------------


def test_every_local_ref_resolves(doc: dict[str, Any]) -> None:
    unresolved = []
    for where, ref in _walk(doc):
        target, fragment = urldefrag(ref)
        try:
            if not target:
                _pointer(doc, fragment)
                continue
            path = (SCHEMAS / target).resolve()
            if path.parent != SCHEMAS or not path.is_file():
                unresolved.append(f"{where}: {ref} (no such file in schemas/)")
                continue
            _pointer(json.loads(path.read_text(encoding="utf-8")), fragment)
        except (KeyError, IndexError, ValueError):
            unresolved.append(f"{where}: {ref} (no such place in the file)")
    assert unresolved == []


def test_contract_files_are_referenced_not_copied(doc: dict[str, Any]) -> None:
    files = {urldefrag(ref)[0] for _, ref in _walk(doc)} - {""}

    assert files >= {f"./{name}.schema.json" for name, _ in TOPIC_CONTRACTS.values()}
    # A copied JSON Schema file would bring its own "$schema"/"$id"/"$defs" along.
    assert _keys(doc) & {"$schema", "$id", "$defs"} == set()


# --- Kafka topics ----------------------------------------------------------------------


def _kafka_channels(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Topic name with the default prefix -> channel."""
    default_prefix = doc["components"]["parameters"]["prefix"]["default"]
    return {
        channel["address"].replace("{prefix}", default_prefix): channel
        for channel in doc["channels"].values()
        if "kafka" in channel.get("bindings", {})
    }


def test_the_prefix_parameter_is_the_topic_prefix_setting(doc: dict[str, Any]) -> None:
    prefix = doc["components"]["parameters"]["prefix"]

    assert prefix["default"] == CommonSettings.model_fields["topic_prefix"].default
    assert "BW_TOPIC_PREFIX" in prefix["description"]
    for channel in _kafka_channels(doc).values():
        assert channel["address"].startswith("{prefix}")
        assert channel["parameters"]["prefix"] == {"$ref": "#/components/parameters/prefix"}


def test_every_topic_is_a_channel_with_its_layout(doc: dict[str, Any]) -> None:
    channels = _kafka_channels(doc)
    prefix = CommonSettings.model_fields["topic_prefix"].default

    assert set(channels) == {prefix + spec.suffix for spec in topic_specs()}
    for spec in topic_specs():
        binding = channels[prefix + spec.suffix]["bindings"]["kafka"]
        assert binding["partitions"] == spec.partitions, spec.suffix
        expected: dict[str, Any] = {
            key: value.split(",") if key == "cleanup.policy" else int(value)
            for key, value in spec.config.items()
        }
        assert binding["topicConfiguration"] == expected, spec.suffix


@pytest.mark.parametrize(("suffix", "contract"), list(TOPIC_CONTRACTS.items()))
def test_each_topic_carries_its_contract_and_key(
    doc: dict[str, Any], suffix: str, contract: tuple[str, str]
) -> None:
    name, key = contract
    channel = _kafka_channels(doc)["bw." + suffix]
    [message] = [_deref(doc, m) for m in channel["messages"].values()]

    assert message["payload"]["schema"] == {"$ref": f"./{name}.schema.json"}
    assert message["payload"]["schemaFormat"] == "application/schema+json;version=2020-12"
    key_refs = [ref for _, ref in _walk(message["bindings"]["kafka"]["key"])]
    assert key_refs == [f"./{name}.schema.json#/properties/{key}"]


def test_every_service_is_said_to_produce_or_consume(doc: dict[str, Any]) -> None:
    by_topic: dict[str, set[tuple[str, str]]] = {}
    channel_names = {id(c): n for n, c in doc["channels"].items()}
    for operation in doc["operations"].values():
        channel = _deref(doc, operation["channel"])
        [tag] = [_deref(doc, t)["name"] for t in operation["tags"]]
        by_topic.setdefault(channel_names[id(channel)], set()).add((tag, operation["action"]))

    assert by_topic["field-events"] >= {
        ("ingest", "send"),
        ("aggregator", "receive"),
        ("api", "receive"),
    }
    assert by_topic["section-state"] >= {("aggregator", "send"), ("api", "receive")}
    assert by_topic["alerts"] >= {("aggregator", "send"), ("api", "receive")}
    assert by_topic["alert-acks"] >= {("api", "send"), ("api", "receive")}
    assert by_topic["report-events"] >= {("ingest", "send"), ("aggregator", "receive")}
    assert by_topic["report-analysis"] >= {("aggregator", "send"), ("api", "receive")}
    assert by_topic["assessment"] >= {("aggregator", "send"), ("api", "receive")}
    assert by_topic["dead-letter"] >= {("ingest", "send")}
    assert by_topic["audit"] >= {
        ("ingest", "send"),
        ("api", "send"),
        ("api", "receive"),
        ("cli", "send"),
    }
    for feed in ("ws-feed", "ws-alerts", "sse-alerts"):
        assert by_topic[feed] == {("api", "send")}


# --- the API's feeds -------------------------------------------------------------------


def _snapshot_types() -> set[str]:
    """The ``type`` arguments routes.py passes to ``_snapshot``."""
    tree = ast.parse(inspect.getsource(routes))
    return {
        node.args[2].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_snapshot"
        and isinstance(node.args[2], ast.Constant)
    }


def _channel_types(doc: dict[str, Any], channel: str) -> set[str]:
    """The message types a channel carries; on the WebSocket channels, those its
    batch frames may hold."""
    messages = [_deref(doc, m) for m in doc["channels"][channel]["messages"].values()]
    if not channel.startswith("ws-"):
        return {m["name"] for m in messages}
    assert [m["name"] for m in messages] == ["batch"], channel
    frame = _deref(doc, messages[0]["payload"])
    assert frame["properties"]["type"] == {"const": "batch"}
    items = frame["properties"]["messages"]["items"]["oneOf"]
    return {_deref(doc, item)["properties"]["type"]["const"] for item in items}


def _emitted_types() -> dict[str, set[str]]:
    control = _snapshot_types()
    sse_source = inspect.getsource(routes.sse_alerts)
    sse_events = set(re.findall(r"event: (\w+)", sse_source))
    return {
        "ws-feed": set(routes.FEED_TYPES) | control | {"heartbeat"},
        "ws-alerts": set(routes.ALERT_TYPES) | control | {"heartbeat"},
        "sse-alerts": set(routes.ALERT_TYPES)
        | control
        | sse_events
        | ({"heartbeat"} if "_heartbeat(" in sse_source else set()),
    }


def test_the_type_enum_is_every_type_the_api_emits(doc: dict[str, Any]) -> None:
    emitted = set(feeds.TOPIC_CODES) | _snapshot_types()
    emitted.add(orjson.loads(routes._heartbeat(Hub()))["type"])

    assert emitted == {
        "snapshot",
        "resync",
        "section_state",
        "alert",
        "ack",
        "analysis",
        "assessment",
        "heartbeat",
    }
    assert set(doc["components"]["schemas"]["FeedMessageType"]["enum"]) == emitted


@pytest.mark.parametrize("channel", ["ws-feed", "ws-alerts", "sse-alerts"])
def test_each_feed_lists_the_messages_it_sends(doc: dict[str, Any], channel: str) -> None:
    assert _channel_types(doc, channel) == _emitted_types()[channel]


def test_websocket_query_parameters_are_the_ones_the_api_reads(doc: dict[str, Any]) -> None:
    read: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(routes))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name | ast.Attribute)
            and ast.unparse(node.func.value) in {"query", "ws.query_params"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            read.add(node.args[0].value)
    schemas = doc["components"]["schemas"]

    assert read == {"token", "cursor", "sections", "country", "kinds", "min_severity", "hourly"}
    assert set(schemas["FeedQuery"]["properties"]) == read
    assert set(schemas["SseQuery"]["properties"]) <= read
    assert set(schemas["FeedQuery"]["properties"]["min_severity"]["enum"]) == set(SEVERITY_ORDER)


def test_close_codes_are_the_ones_the_api_uses(doc: dict[str, Any]) -> None:
    used: set[int] = set()
    for node in ast.walk(ast.parse(inspect.getsource(routes))):
        value: ast.expr | None = None
        if isinstance(node, ast.keyword) and node.arg == "code":
            value = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "_refuse"
        ):
            value = node.args[2]  # _refuse(ws, subprotocol, code, reason)
        if isinstance(value, ast.Constant):
            used.add(value.value)
        elif isinstance(value, ast.Name) and hasattr(routes, value.id):
            used.add(getattr(routes, value.id))
    documented = {c["const"] for c in doc["components"]["schemas"]["WebSocketCloseCodes"]["oneOf"]}

    assert {4008, 4401, 4403, 4400} <= used
    assert documented == used


# --- messages the API's code builds validate against the document ------------------------


def _registry(doc: dict[str, Any]) -> Registry:
    registry: Registry = Registry()
    registry = registry.with_resource(
        DOCUMENT.as_uri(), Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    for path in SCHEMAS.glob("*.schema.json"):
        resource = Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))
        registry = registry.with_resources([(path.as_uri(), resource), (resource.id(), resource)])
    return registry


def _feed_frames() -> list[tuple[str, str]]:
    """(channel, frame) as the API sends them: a state and an alert from the
    aggregator's engine and an ack, published through the Hub and read back by a
    `/ws/feed` and a `/ws/alerts` subscriber; snapshots, resyncs and a heartbeat
    framed as the routes frame them."""
    rule = ThresholdRule(
        id="crossings-24h",
        type="threshold",
        kinds=["crossing_attempt"],
        window="24h",
        severity={"low": 10, "medium": 30, "high": 50},
    )
    kra = section("LV-KRA")
    engine = Engine(Catalogue([kra]), [rule])
    agg = SectionAggregate(section_id="LV-KRA")
    engine.apply_record(agg, 0, 0, [field_event(count=40)], BatchOutcome())
    publication = engine.refresh(agg, NOW)
    assert publication.state is not None
    state = orjson.loads(orjson.dumps(publication.state.model_dump(mode="json")))
    _, firing = evaluate(rule, kra, 57, None, 0, NOW)
    assert firing is not None
    alert = orjson.loads(orjson.dumps(firing.model_dump(mode="json")))
    ack = {
        "schema_version": 1,
        "ack_id": "0b8e2f4c-3d7a-4c1e-9f2a-5b6c7d8e9f01",
        "alert_id": alert["alert_id"],
        "seq": alert["seq"],
        "by": "duty officer",
        "comment": "",
        "acked_at": iso(NOW + 60),
        "token_id": "bw_1a2b3c4d",
    }
    report = examples.REPORT
    analysis = {
        "schema_version": 1,
        "report_id": report["report_id"],
        "country": report["country"],
        "published_at": report["published_at"],
        "source_type": report["source"]["type"],
        **report["analysis"],
    }
    assessment = assess("LV", [analysis], [state], [], datetime.fromtimestamp(NOW, UTC)).to_dict()
    view = View(Catalogue([kra, section("LT-ADU")]))
    channels = {"ws-feed": routes.FEED_TYPES, "ws-alerts": routes.ALERT_TYPES}

    async def build() -> list[tuple[str, str]]:
        hub = Hub()
        subs = {ch: hub.subscribe(Filter(types=types), None)[0] for ch, types in channels.items()}
        # and a /ws/feed client that asked for the hourly series
        with_hourly = hub.subscribe(Filter(types=routes.FEED_TYPES, hourly=True), None)[0]
        for kind, value, apply in (
            ("section_state", state, view.apply_state),
            ("alert", alert, view.apply_alert),
            ("ack", ack, view.apply_ack),
            ("analysis", analysis, view.apply_analysis),
            ("assessment", assessment, view.apply_assessment),
        ):
            assert apply(value)
            hub.publish(kind, value, 0, 0, country="LV", severity=None)
        await asyncio.sleep(0)  # the hub wakes its writers
        out = []
        for channel, sub in subs.items():
            frame = hub.next_frame(sub)
            assert frame is not None and hub.next_frame(sub) is None
            out.append((channel, frame))
            for type_ in sorted(_snapshot_types()):
                snapshot = routes._snapshot(view, hub, type_, Filter(types=channels[channel]))
                out += [(channel, f) for f in feeds.frames([snapshot])]
            out.append((channel, feeds.batch_frame([routes._heartbeat(hub)])))
        frame = hub.next_frame(with_hourly)
        assert frame is not None and '"hourly":[' in frame
        out.append(("ws-feed", frame))
        hub.close_all()
        return out

    return asyncio.run(build())


def _validator(doc: dict[str, Any], ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": DOCUMENT.as_uri() + ref}, registry=_registry(doc))


def test_frames_the_api_builds_validate_against_the_document(doc: dict[str, Any]) -> None:
    seen: dict[str, set[str]] = {"ws-feed": set(), "ws-alerts": set()}
    for channel, frame in _feed_frames():
        message = _deref(doc, doc["channels"][channel]["messages"]["batch"])
        validator = _validator(doc, message["payload"]["$ref"])
        decoded = orjson.loads(frame)
        problems = [leaf for e in validator.iter_errors(decoded) for leaf in _leaves(e)]
        assert problems == [], (channel, [m["type"] for m in decoded["messages"]])
        seen[channel] |= {m["type"] for m in decoded["messages"]}

    assert seen["ws-feed"] == set(doc["components"]["schemas"]["FeedMessageType"]["enum"])
    assert seen["ws-alerts"] == _emitted_types()["ws-alerts"]


def test_a_wrong_frame_is_refused_by_the_document(doc: dict[str, Any]) -> None:
    # Guards the check above: the external $refs must really be followed.
    frame = orjson.loads(next(f for ch, f in _feed_frames() if ch == "ws-alerts"))
    alert = next(m for m in frame["messages"] if m["type"] == "alert")
    messages = _validator(doc, "#/components/schemas/AlertMessage")
    frames = _validator(doc, "#/components/schemas/AlertBatch")
    assert messages.is_valid(alert) and frames.is_valid(frame)
    assert not messages.is_valid({**alert, "payload": {**alert["payload"], "severity": "extreme"}})
    assert not messages.is_valid({**alert, "cursor": "not a cursor"})
    # A bare message, an empty batch, a section state on the alert feed: refused.
    assert not frames.is_valid(alert)
    assert not frames.is_valid({"type": "batch", "messages": []})
    state = orjson.loads(next(f for ch, f in _feed_frames() if ch == "ws-feed"))["messages"][0]
    assert state["type"] == "section_state"
    assert not frames.is_valid({"type": "batch", "messages": [state]})
