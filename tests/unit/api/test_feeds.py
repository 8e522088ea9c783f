"""The feed hub: batch frames, shared encoding, filters, cursors, slow clients (no network)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest

from services.api.feeds import (
    STALL_SECONDS,
    Filter,
    Hub,
    Subscriber,
    decode_cursor,
    dumps,
    frames,
)

ALL = Filter()


def _state(sid: str, version: int, level: str = "low") -> dict[str, Any]:
    return {"section_id": sid, "version": version, "level": level, "name": "Kuźnica"}


def _publish(hub: Hub, sid: str, version: int, partition: int = 0, level: str = "low") -> None:
    hub.publish(
        "section_state",
        _state(sid, version, level),
        partition,
        version,
        country=sid[:2],
        severity=level,
        changed_kinds={"detection"},
    )


def _messages(frame: str | None) -> list[dict[str, Any]]:
    assert frame is not None
    decoded = json.loads(frame)
    assert decoded["type"] == "batch"
    messages: list[dict[str, Any]] = decoded["messages"]
    return messages


async def _flushed() -> None:
    await asyncio.sleep(0)


async def test_a_writer_gets_everything_pending_in_one_frame_in_order() -> None:
    hub = Hub()
    sub, backlog = hub.subscribe(ALL, None)
    assert backlog == []
    for v in range(1, 6):
        _publish(hub, "LV-KRA", v)
    await _flushed()

    got = _messages(hub.next_frame(sub))
    assert [m["payload"]["version"] for m in got] == [1, 2, 3, 4, 5]
    # Each message keeps its own cursor: where a reconnect resumes after it.
    assert [decode_cursor(m["cursor"]) for m in got] == [{"s0": v + 1} for v in range(1, 6)]
    assert hub.next_frame(sub) is None
    assert hub.caught_up(sub)


async def test_clients_at_the_same_place_with_the_same_filter_share_one_frame() -> None:
    hub = Hub()
    subs = [hub.subscribe(Filter(), None)[0] for _ in range(3)]
    _publish(hub, "LV-KRA", 1)
    _publish(hub, "LT-MED", 1)
    await _flushed()

    built = [hub.next_frame(s) for s in subs]
    assert built[0] is not None
    # Built once, the same object for every client.
    assert built[0] is built[1] is built[2]


async def test_filters_pick_what_each_client_gets() -> None:
    hub = Hub()
    latvia, _ = hub.subscribe(Filter(countries=("LV",)), None)
    kuznica, _ = hub.subscribe(Filter(sections=("PL-KU*",)), None)
    severe, _ = hub.subscribe(Filter(min_severity="high"), None)
    alerts_only, _ = hub.subscribe(Filter(types=frozenset({"alert", "ack"})), None)
    _publish(hub, "LV-KRA", 1)
    _publish(hub, "PL-KUZ", 1, level="critical")
    _publish(hub, "LT-MED", 1)
    await _flushed()

    def sections(sub: Subscriber) -> list[str]:
        frame = hub.next_frame(sub)
        return [] if frame is None else [m["payload"]["section_id"] for m in _messages(frame)]

    assert sections(latvia) == ["LV-KRA"]
    assert sections(kuznica) == ["PL-KUZ"]
    assert sections(severe) == ["PL-KUZ"]
    assert sections(alerts_only) == []
    # Having read past what it does not want, the filtered client is caught up.
    assert hub.caught_up(alerts_only)


async def test_a_big_backlog_is_split_into_frames_of_bounded_size() -> None:
    hub = Hub(max_frame_bytes=1000)
    sub, _ = hub.subscribe(ALL, None)
    for v in range(1, 41):
        _publish(hub, "LV-KRA", v)
    await _flushed()

    got: list[str] = []
    while (frame := hub.next_frame(sub)) is not None:
        got.append(frame)
    assert 4 <= len(got) < 40  # ~120 bytes a message
    assert all(len(f) < 1000 + 200 for f in got)
    versions = [m["payload"]["version"] for f in got for m in _messages(f)]
    assert versions == list(range(1, 41))
    # The same bound for a reconnecting client's backlog.
    backlog = [e.data for e in hub.log]
    assert [m for f in frames(backlog, 1000) for m in _messages(f)] == [
        orjson.loads(d) for d in backlog
    ]


async def test_writers_wake_at_most_every_flush_period() -> None:
    hub = Hub(flush_seconds=0.05)
    sub, _ = hub.subscribe(ALL, None)
    _publish(hub, "LV-KRA", 1)
    await _flushed()
    assert len(_messages(hub.next_frame(sub))) == 1  # the first one goes at once
    _publish(hub, "LV-KRA", 2)
    _publish(hub, "LV-KRA", 3)
    await _flushed()
    assert hub.next_frame(sub) is None  # within the period: held back
    await asyncio.wait_for(sub.wait(), timeout=5)
    assert [m["payload"]["version"] for m in _messages(hub.next_frame(sub))] == [2, 3]


async def test_a_reconnect_gets_exactly_what_it_missed_or_a_resync() -> None:
    hub = Hub(replay_size=100)
    for v in range(1, 11):
        _publish(hub, "LV-KRA", v)
    cursor = decode_cursor(hub.log[3].cursor)
    missed = hub.replay(ALL, cursor)
    assert missed is not None
    assert [orjson.loads(e.data)["payload"]["version"] for e in missed] == list(range(5, 11))
    for v in range(11, 200):
        _publish(hub, "LV-KRA", v)
    assert hub.replay(ALL, cursor) is None  # beyond the replay log


async def test_a_client_that_falls_out_of_the_log_is_dropped() -> None:
    hub = Hub(queue_size=10, replay_size=100)
    sub, _ = hub.subscribe(ALL, None)
    for v in range(1, 201):  # without a flush in between: no writer ran
        _publish(hub, "LV-KRA", v)
    await _flushed()

    assert hub.next_frame(sub) is None
    assert sub.too_slow and sub not in hub._subscribers


async def test_a_client_stuck_in_a_send_too_far_behind_is_dropped_others_are_not() -> None:
    hub = Hub(queue_size=10, replay_size=1000)
    stuck, _ = hub.subscribe(ALL, None)
    catching_up, _ = hub.subscribe(ALL, None)
    idle, _ = hub.subscribe(ALL, None)
    waiter = asyncio.create_task(idle.wait())
    await _flushed()
    now = asyncio.get_running_loop().time()
    # Its socket has taken nothing for longer than STALL_SECONDS...
    stuck.sending, stuck.send_started = True, now - STALL_SECONDS - 1
    # ... this one's send began just now: a client catching up.
    catching_up.sending, catching_up.send_started = True, now
    for v in range(1, 12):
        _publish(hub, "LV-KRA", v)
    await _flushed()

    assert stuck.too_slow
    assert not catching_up.too_slow
    await asyncio.wait_for(waiter, timeout=5)
    assert not idle.too_slow
    assert len(_messages(hub.next_frame(idle))) == 11


async def test_an_idle_client_is_woken_for_a_heartbeat() -> None:
    hub = Hub(heartbeat_seconds=0.05)
    sub, _ = hub.subscribe(ALL, None)
    await asyncio.wait_for(sub.wait(), timeout=5)
    assert sub.heartbeat_due
    hub.close_all()


async def test_close_all_ends_every_writer() -> None:
    hub = Hub()
    sub, _ = hub.subscribe(ALL, None)
    waiter = asyncio.create_task(sub.wait())
    await _flushed()
    hub.close_all()
    await asyncio.wait_for(waiter, timeout=5)
    assert sub.closed and not sub.too_slow


@pytest.mark.parametrize("text", ["Kuźnica", "Šalčininkai", "emoji 😀", "plain"])
def test_messages_are_ascii_json_with_the_same_content(text: str) -> None:
    data = dumps({"name": text, "n": [1, 2]})
    assert data.isascii()
    assert json.loads(data) == orjson.loads(data) == {"name": text, "n": [1, 2]}


async def test_section_states_come_without_the_hourly_series_unless_asked() -> None:
    hub = Hub()
    brief, _ = hub.subscribe(ALL, None)
    full, _ = hub.subscribe(Filter(hourly=True), None)
    series = [{"start": "2026-11-22T00:00:00+00:00", "counts": {"detection": 1}}] * 24
    hub.publish("section_state", {**_state("LV-KRA", 1), "hourly": series}, 0, 0, country="LV")
    hub.publish("alert", {"alert_id": "a.LV-KRA.1", "section_id": "LV-KRA"}, 0, 0, country="LV")
    await _flushed()
    got_brief, got_full = _messages(hub.next_frame(brief)), _messages(hub.next_frame(full))
    assert "hourly" not in got_brief[0]["payload"]
    assert got_full[0]["payload"]["hourly"] == series
    assert {k: v for k, v in got_full[0]["payload"].items() if k != "hourly"} == got_brief[0][
        "payload"
    ]
    # Same cursors, and messages without a series are the same bytes for both.
    assert [m["cursor"] for m in got_brief] == [m["cursor"] for m in got_full]
    assert got_brief[1] == got_full[1]
    # A reconnect gets its backlog in its own form too.
    cursor = decode_cursor(got_brief[0]["cursor"])
    _, backlog = hub.subscribe(ALL, {tp: 0 for tp in cursor})
    assert backlog is not None and b'"hourly"' not in ALL.data(backlog[0])
    assert b'"hourly"' in Filter(hourly=True).data(backlog[0])
    hub.close_all()


async def test_a_country_scope_passes_only_its_countries_and_the_client_cannot_widen_it() -> None:
    hub = Hub()
    scoped = hub.subscribe(Filter(scope=frozenset({"LV"})), None)[0]
    asks_pl = hub.subscribe(Filter(scope=frozenset({"LV"}), countries=("PL",)), None)[0]
    unscoped = hub.subscribe(ALL, None)[0]
    _publish(hub, "LV-KRA", 1)
    _publish(hub, "PL-KUZ", 1)
    # An ack of an alert the view does not know has no country: not the token's.
    hub.publish("ack", {"alert_id": "x", "ack_id": "1"}, 0, 0, country="")
    await _flushed()

    assert [m["payload"]["section_id"] for m in _messages(hub.next_frame(scoped))] == ["LV-KRA"]
    assert hub.next_frame(asks_pl) is None
    assert len(_messages(hub.next_frame(unscoped))) == 3
    assert ALL.plain and not Filter(scope=frozenset({"LV"})).plain
    # A reconnect's replay is scoped too.
    backlog = hub.replay(Filter(scope=frozenset({"PL"})), {})
    assert backlog is not None and [e.section_id for e in backlog] == ["PL-KUZ"]
