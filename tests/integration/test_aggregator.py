"""The aggregator on the real broker: wall-clock resolution, crash recovery, scale-out.

Operators trust a number on the wall only if it is exactly right after a
crash, a rebalance and a redelivery; these tests prove it against real Kafka
and real worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi.testclient import TestClient

from schemas.models import KINDS
from services.aggregator import windows
from services.aggregator.rules import load_rules
from services.aggregator.state import (
    BatchOutcome,
    Engine,
    SectionAggregate,
    id_hash,
    restore_all,
)
from services.common.catalogue import Catalogue
from services.common.headers import version_of
from services.common.kafka import make_consumer, make_producer
from services.common.settings import DEFAULT_CONFIG_DIR
from tests.integration.conftest import Deployment, Worker, event, read_alerts, wait_until

pytestmark = pytest.mark.integration

CATALOGUE = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")

LADDER_RULES = (
    "rules:\n"
    "  - id: crossings\n"
    "    type: threshold\n"
    "    kinds: [crossing_attempt]\n"
    "    window: 24h\n"
    "    severity: {low: 200, medium: 500, high: 800, critical: 1100}\n"
    "  - id: incidents\n"
    "    type: threshold\n"
    "    kinds: [incident]\n"
    "    window: 24h\n"
    "    sections: ['PL-*']\n"
    "    severity: {high: 600}\n"
)


def _rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _stream(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` events over every section and kind, all inside one grace period."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    sections = list(CATALOGUE)
    return [
        event(
            rng.choice(sections),
            rng.choice(KINDS),
            rng.randint(1, 3),
            now - timedelta(seconds=rng.uniform(0, 80 * 60)),
        )
        for _ in range(n)
    ]


def _expected(events: list[dict[str, Any]], rules_path: Path) -> dict[str, dict[str, Any]]:
    """What an uninterrupted run ends with: the pure engine fed every event at once."""
    engine = Engine(CATALOGUE, load_rules(rules_path))
    by_section: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_section[e["section_id"]].append(e)
    out = {}
    for sid in CATALOGUE:
        agg = SectionAggregate(sid)
        engine.apply_record(agg, 0, 0, by_section.get(sid, []), BatchOutcome())
        now = time.time()
        engine.refresh(agg, now)
        agg.writes()  # as the worker does after each refresh (the touched hours go once)
        # A second look a second later changes nothing, unless that second crosses
        # an hour: the state's 24 hours move on then (a CI run failed at 15:00:00.5).
        later = max(now, min(now + 1, (now // windows.HOUR + 1) * windows.HOUR - 0.001))
        state = engine.refresh(agg, later)
        assert not state
        out[sid] = {
            "counts": {
                k: sum(e["count"] for e in by_section.get(sid, []) if e["kind"] == k) for k in KINDS
            },
            "level": max(
                (e.severity for e in agg.episodes.values()),
                key=["low", "medium", "high", "critical"].index,
                default="low",
            ),
            "firing": {e.alert_id: e.severity for e in agg.episodes.values()},
        }
    return out


def _post_all(ingest: TestClient, events: list[dict[str, Any]], size: int = 1000) -> None:
    """Post like a field unit: on 429/503 wait as told and resend the same events
    (ingest answers ``duplicate`` for those it already has)."""
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        for _ in range(20):
            resp = ingest.post("/v1/field-events", json=chunk)
            if resp.status_code not in (429, 503):
                break
            time.sleep(float(resp.headers.get("retry-after", "1")))
        assert resp.status_code == 202, resp.text[:500]
        body = resp.json()
        assert body["rejected"] == []
        assert len(body["accepted"]) + len(body["duplicate"]) == len(chunk)


class _Poster(threading.Thread):
    """Posts in the background and keeps its failure for the test to re-raise."""

    def __init__(self, ingest: TestClient, events: list[dict[str, Any]], size: int) -> None:
        super().__init__(daemon=True)
        self.args_ = (ingest, events, size)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _post_all(*self.args_)
        except BaseException as exc:  # handed to the test thread
            self.error = exc


def _produce_raw(dep: Deployment, events: list[dict[str, Any]]) -> None:
    """Write events straight to the field-events topic, as ingest's records."""

    async def send() -> None:
        producer = make_producer(dep.settings())
        await producer.start()
        try:
            by_section: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for e in events:
                by_section[e["section_id"]].append(e)
            for sid, evs in by_section.items():
                value = orjson.dumps({"schema_version": 1, "section_id": sid, "events": evs})
                await producer.send_and_wait(dep.prefix + "field-events", value, key=sid.encode())
        finally:
            await producer.stop()

    asyncio.run(send())


def _picture(api: TestClient) -> dict[str, dict[str, Any]]:
    firing = {a["alert_id"]: a for a in api.get("/api/v1/alerts?status=firing&limit=1000").json()}
    out = {}
    for s in api.get("/api/v1/sections").json():
        out[s["section_id"]] = {
            "counts": s["counts_24h"],
            "level": s["level"],
            "firing": {aid: firing[aid]["severity"] for aid in s["firing_alerts"] if aid in firing},
        }
    return out


def _states_on_topic(dep: Deployment, sections: set[str]) -> dict[str, list[tuple[int, int]]]:
    """(version, total 24 h count) of every state published for ``sections``."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in _read_all(dep, dep.prefix + "section-state"):
        state = orjson.loads(r.value)
        # The version header the assessor reads instead of decoding (assess_agent.py).
        assert version_of(r.headers) == state["version"], (r.headers, state["version"])
        if state["section_id"] in sections:
            out[state["section_id"]].append((state["version"], sum(state["counts_24h"].values())))
    return dict(out)


def _read_all(dep: Deployment, topic: str) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the beginning)."""

    async def read() -> list[Any]:
        consumer = make_consumer(dep.settings(), topic)
        await consumer.start()
        out: list[Any] = []
        try:
            while True:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=10)
                if not batch:
                    break
                for records in batch.values():
                    out.extend(records)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


def _uncounted_records(dep: Deployment, sections: set[str]) -> dict[str, Any]:
    """Per section: the input records (partition, offset, events, uncounted) holding
    events whose id is not in the section's final aggregate, and the input offsets
    that aggregate says it reflects."""
    records = _read_all(dep, f"{dep.app_id}-section-aggregates-changelog")
    final = {
        agg.section_id: agg
        for agg in restore_all((r.key, r.value) for r in records)
        if agg.section_id in sections
    }
    out: dict[str, Any] = {
        sid: {"offsets": agg.offsets, "records": []} for sid, agg in final.items()
    }
    for r in _read_all(dep, dep.prefix + "field-events"):
        sid = r.key.decode()
        if sid not in final:
            continue
        events = orjson.loads(r.value)["events"]
        uncounted = sum(id_hash(e["event_id"]) not in final[sid].seen for e in events)
        if uncounted:
            out[sid]["records"].append((r.partition, r.offset, len(events), uncounted))
    return out


@contextlib.asynccontextmanager
async def _group_client(dep: Deployment) -> AsyncIterator[AIOKafkaConsumer]:
    """A client of the aggregator's consumer group that never joins it (offsets only)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=dep.bootstrap, group_id=dep.app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


def _committed(dep: Deployment) -> dict[int, int | None]:
    """The aggregator group's committed offsets on the input topic, per partition."""

    async def read() -> dict[int, int | None]:
        async with _group_client(dep) as consumer:
            topic = dep.prefix + "field-events"
            return {
                p: await consumer.committed(TopicPartition(topic, p)) for p in range(dep.partitions)
            }

    return asyncio.run(read())


def _inputs_on_topic(dep: Deployment, sections: set[str]) -> dict[str, dict[str, int]]:
    """Per section, the count sum per kind of the distinct event ids on the input topic."""
    seen: dict[str, dict[str, Any]] = {}
    for r in _read_all(dep, dep.prefix + "field-events"):
        for e in orjson.loads(r.value)["events"]:
            if e["section_id"] in sections:
                seen[e["event_id"]] = e
    out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
    for e in seen.values():
        out[e["section_id"]][e["kind"]] += e["count"]
    return {k: dict(v) for k, v in out.items()}


def _wait_for_picture(
    api: TestClient, expected: dict[str, dict[str, Any]], what: str, dep: Deployment
) -> None:
    """Wait until the API shows ``expected``; on time-out, name what differs."""
    deadline = time.monotonic() + 120
    while True:
        got = _picture(api)
        if got == expected:
            return
        if time.monotonic() > deadline:
            diff = {
                sid: {"got": got.get(sid), "want": want}
                for sid, want in expected.items()
                if got.get(sid) != want
            }
            states = _states_on_topic(dep, set(diff))
            inputs = _inputs_on_topic(dep, set(diff))
            missing = _uncounted_records(dep, set(diff))
            raise AssertionError(
                f"timed out waiting for {what}; differs: {diff}; states on the topic: {states}; "
                f"distinct input events on the topic (count sum per kind): {inputs}; "
                f"input records with events the final aggregates never counted: {missing}"
            )
        time.sleep(0.2)


def _assert_transitions_consistent(alerts: list[dict[str, Any]]) -> None:
    """Redeliveries may repeat a transition, but never with different content."""
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for a in alerts:
        key = (a["alert_id"], a["seq"])
        content = (a["status"], a["severity"])
        assert seen.setdefault(key, content) == content, f"{key}: {seen[key]} vs {content}"


def _counted(worker: Worker) -> float:
    return sum(
        float(line.split()[-1])
        for line in worker.metrics().splitlines()
        if line.startswith("bw_aggregator_events_counted_total{")
    )


def test_quiet_section_alert_resolves_by_wall_clock_alone(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
    tmp_path: Path,
) -> None:
    rules = _rules_file(
        tmp_path,
        "rules:\n  - id: burst\n    type: threshold\n    kinds: [crossing_attempt]\n"
        "    window: 10s\n    sections: [LV-KRA]\n    severity: {high: 5}\n    hysteresis: 0\n",
    )
    start_worker(BW_RULES_FILE=str(rules), BW_BUCKET_SECONDS="5")
    resp = ingest.post(
        "/v1/field-events", json=[event("LV-KRA", "crossing_attempt", 6, datetime.now(UTC))]
    )
    assert resp.status_code == 202
    wait_until(lambda: api.get("/api/v1/sections/LV-KRA").json()["level"] == "high", 20, "firing")
    fired_at = time.monotonic()
    # No new event from here on: only the clock moves.
    wait_until(lambda: api.get("/api/v1/sections/LV-KRA").json()["level"] == "low", 40, "resolved")
    assert time.monotonic() - fired_at >= 3  # it did not resolve at once
    alerts = read_alerts(deployment, expect_at_least=2)
    assert [(a["alert_id"], a["status"]) for a in alerts] == [
        ("burst.LV-KRA.1", "firing"),
        ("burst.LV-KRA.1", "resolved"),
    ]
    assert alerts[1]["resolved_at"] is not None
    section = api.get("/api/v1/sections/LV-KRA").json()
    assert section["firing_alerts"] == []
    assert section["counts_1h"]["crossing_attempt"] == 6  # the hour still holds them


def test_worker_killed_mid_stream_ends_exactly_as_an_uninterrupted_run(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
    tmp_path: Path,
) -> None:
    rules = _rules_file(tmp_path, LADDER_RULES)
    events = _stream(50_000, seed=3)
    # Records delivered twice (a producer retry after a lost ack, or a replay)
    # must not count twice: these bypass ingest's own dedupe on purpose.
    retried = events[10_000:10_500]
    first = start_worker(BW_RULES_FILE=str(rules))
    # The stream keeps flowing while the worker dies and its successor starts.
    poster = _Poster(ingest, events[:40_000], 500)
    poster.start()
    try:
        wait_until(lambda: _counted(first) > 8_000, 60, "the first worker to be counting")
        first.stop(signal.SIGKILL)
        assert first.process.returncode == -signal.SIGKILL
        committed_at_kill = _committed(deployment)
        _produce_raw(deployment, retried)
        second = start_worker(BW_RULES_FILE=str(rules))
    finally:
        poster.join(timeout=120)
    assert not poster.is_alive()
    if poster.error is not None:
        raise poster.error
    _post_all(ingest, events[40_000:])
    expected = _expected(events, rules)
    try:
        _wait_for_picture(api, expected, "the picture of an uninterrupted run", deployment)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; committed input offsets when the first worker died: {committed_at_kill}; "
            f"first worker's log: {first.log()}; second worker's log: {second.log()}"
        ) from None
    assert any(e["firing"] for e in expected.values()), "the test should exercise alerts"
    _assert_transitions_consistent(read_alerts(deployment, expect_at_least=1))
    duplicates = sum(
        float(line.split()[-1])
        for line in second.metrics().splitlines()
        if line.startswith("bw_aggregator_duplicate_events_total ")
    )
    assert duplicates >= len(retried)  # each redelivered event was seen and not counted


def _commit_for_group(dep: Deployment, offsets: dict[int, int]) -> None:
    """Commit input offsets for the aggregator's group, as a worker would have."""

    async def commit() -> None:
        async with _group_client(dep) as consumer:
            topic = dep.prefix + "field-events"
            consumer.assign([TopicPartition(topic, p) for p in offsets])
            await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})

    asyncio.run(commit())


def _end_offsets(dep: Deployment) -> dict[int, int]:
    async def read() -> dict[int, int]:
        consumer = make_consumer(dep.settings(), dep.prefix + "field-events")
        await consumer.start()
        try:
            ends = await consumer.end_offsets(
                [TopicPartition(dep.prefix + "field-events", p) for p in range(dep.partitions)]
            )
            return {tp.partition: o for tp, o in ends.items()}
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_committed_offsets_ahead_of_the_aggregates_lose_nothing(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    api: TestClient,
    tmp_path: Path,
) -> None:
    """The aggregates decide where counting resumes: records behind the group's
    committed offsets that no aggregate reflects are sought back to and counted,
    both when more records follow (a gap) and at the end of a quiet partition."""
    rules = _rules_file(tmp_path, LADDER_RULES)
    events = _stream(3_000, seed=5)
    for start in range(0, len(events), 300):  # ten records per section
        _produce_raw(deployment, events[start : start + 300])
    ends = _end_offsets(deployment)
    assert all(ends.values())
    # As if a worker had committed and died before its changelog: even
    # partitions claim everything, odd ones half.
    _commit_for_group(deployment, {p: e if p % 2 == 0 else e // 2 for p, e in ends.items()})
    worker = start_worker(BW_RULES_FILE=str(rules))
    expected = _expected(events, rules)
    _wait_for_picture(api, expected, "every record counted", deployment)
    rewinds = sum(
        float(line.split()[-1])
        for line in worker.metrics().splitlines()
        if line.startswith("bw_aggregator_input_rewinds_total ")
    )
    assert rewinds >= deployment.partitions, worker.log()
    # ?name[]= serves just the series asked for (what bench.aggregator polls).
    only = worker.metrics("bw_aggregator_input_rewinds_total", "bw_aggregator_sections_active")
    names = {line.split("{")[0].split()[0] for line in only.splitlines() if line[:1] != "#"}
    assert names == {"bw_aggregator_input_rewinds_total", "bw_aggregator_sections_active"}
    assert f"bw_aggregator_input_rewinds_total {rewinds}" in only


def test_two_workers_share_partitions_and_one_leaving_loses_nothing(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
    tmp_path: Path,
) -> None:
    rules = _rules_file(tmp_path, LADDER_RULES)
    events = _stream(20_000, seed=11)
    a = start_worker(BW_RULES_FILE=str(rules))
    b = start_worker(BW_RULES_FILE=str(rules))

    def owned(w: Worker) -> float:
        for line in w.metrics().splitlines():
            if line.startswith("bw_aggregator_sections_active "):
                return float(line.split()[-1])
        return 0.0

    # Each worker reports what it owns at its next tick after the rebalance.
    wait_until(
        lambda: owned(a) > 0 and owned(b) > 0 and owned(a) + owned(b) == len(CATALOGUE),
        60,
        "both workers to own a share of the sections",
    )
    _post_all(ingest, events[:10_000])
    wait_until(lambda: _counted(a) > 0 and _counted(b) > 0, 60, "both workers counting")
    a.stop(signal.SIGTERM)
    assert a.process.returncode == 0, a.log()
    _post_all(ingest, events[10_000:])
    try:
        wait_until(lambda: owned(b) == len(CATALOGUE), 60, "the survivor to own every section")
    except AssertionError as exc:  # seen once in CI (session 6): keep what the survivor said
        raise AssertionError(f"{exc}\n--- survivor's log:\n{b.log(400)}") from None
    expected = _expected(events, rules)
    _wait_for_picture(api, expected, "exact counts after the hand-over", deployment)


def test_a_long_rebalance_logs_what_the_consumer_waits_for(
    start_worker: Callable[..., Worker],
) -> None:
    """BW_STALL_REPORT_SECONDS: a worker not ready for longer (here its first join,
    which waits half the session timeout) logs the consumer's state, read from the
    real Faust and aiokafka objects."""
    worker = start_worker(BW_STALL_REPORT_SECONDS="0.5")
    text = worker.log_path.read_text()
    assert "not ready for" in text, worker.log()
    report = text[text.index("not ready for") :]
    assert "report failed" not in report, report
    for part in (
        "faust: generation=",
        "faust paused:",
        "recovery active offsets:",
        "worker tasks:",
    ):
        assert part in report, report
    # Once a minute at most while it lasts: this start-up gives one report.
    assert text.count("not ready for") == 1, text


def test_a_publish_interval_coalesces_a_hot_sections_states_but_never_holds_an_alert(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    ingest: TestClient,
    api: TestClient,
    tmp_path: Path,
) -> None:
    """BW_STATE_PUBLISH_INTERVAL=1: 40 one-event posts to one section over ~2 s give
    a handful of states, not 40; the last is exact; the alert the 10th event fires
    is on bw.alerts (with its state) as soon as that event is counted."""
    rules = _rules_file(
        tmp_path,
        "rules:\n  - id: hot\n    type: threshold\n    kinds: [detection]\n"
        "    window: 1h\n    sections: [LV-KRA]\n    severity: {high: 10}\n    hysteresis: 0\n",
    )
    worker = start_worker(BW_RULES_FILE=str(rules), BW_STATE_PUBLISH_INTERVAL="1")
    now = datetime.now(UTC)
    started = time.monotonic()
    for _ in range(40):
        resp = ingest.post("/v1/field-events", json=[event("LV-KRA", "detection", 1, now)])
        assert resp.status_code == 202, resp.text
        time.sleep(0.05)
    took = time.monotonic() - started
    wait_until(
        lambda: api.get("/api/v1/sections/LV-KRA").json()["counts_1h"]["detection"] == 40,
        20,
        "the held-back state to go out",
    )
    states = _states_on_topic(deployment, {"LV-KRA"})["LV-KRA"]
    assert states[-1][1] == 40
    # One per second at most (plus the first, sent at once, and the alert's own).
    assert len(states) <= took + 3, (len(states), took, states)
    # Whoever builds it (a batch, the timer's sweep, the held-back sender), a state
    # comes at least the interval after the one before, unless it is the first to
    # carry the alert.
    stamps = [
        (
            sum(d["counts_24h"].values()),
            datetime.fromisoformat(d["updated_at"]).timestamp(),
            bool(d["firing_alerts"]),
        )
        for d in (
            orjson.loads(r.value)
            for r in _read_all(deployment, deployment.prefix + "section-state")
        )
        if d["section_id"] == "LV-KRA"
    ]
    for (_, before, was), (_, at, alerting) in itertools.pairwise(stamps):
        assert (alerting and not was) or at - before >= 0.9, stamps
    assert _counted(worker) == 40
    (fired,) = read_alerts(deployment, expect_at_least=1)
    # Evaluated with the batch that counted the 10th event (events 50 ms apart may
    # share a fetch of up to BW_FETCH_MAX_WAIT_MS), not at the next full refresh, and
    # sent with the first state after the crossing: alerts are never held back.
    first = next(i for i, (_, _, alerting) in enumerate(stamps) if alerting)
    assert first > 0 and stamps[first - 1][0] < 10 <= stamps[first][0], stamps
    assert (fired["alert_id"], fired["status"], fired["value"]) == (
        "hot.LV-KRA.1",
        "firing",
        stamps[first][0],
    )
