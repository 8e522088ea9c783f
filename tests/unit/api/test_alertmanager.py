"""Alertmanager push: what each transition becomes, and what is retried or dropped."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import REGISTRY

from services.api.alertmanager import AlertmanagerPusher, AlertMapping
from services.api.view import View
from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR

CAT = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")
T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def _t(
    seq: int,
    status: str,
    severity: str,
    at_minutes: float,
    section: str = "LV-KRA",
    value: int = 120,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "alert_id": f"crossings-24h.{section}.1",
        "seq": seq,
        "rule": "crossings-24h",
        "section_id": section,
        "country": section[:2],
        "status": status,
        "severity": severity,
        "value": value,
        "threshold": 100,
        "window": "24h",
        "started_at": _at(0),
        "updated_at": _at(at_minutes),
        "resolved_at": _at(at_minutes) if status == "resolved" else None,
        "summary": f"{section}: {value} crossing attempts in 24 h ≥ {severity} threshold 100",
    }


def _z(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


MAPPING = AlertMapping(resend_seconds=60)
LABELS = {
    "alertname": "crossings-24h",
    "rule": "crossings-24h",
    "section": "LV-KRA",
    "country": "LV",
}


def test_a_new_firing_alert_carries_its_labels_annotations_and_a_future_end() -> None:
    resolves, firing = MAPPING.transition([_t(1, "firing", "high", 0)], NOW)
    assert resolves == []
    assert firing == {
        "labels": LABELS | {"severity": "high"},
        "annotations": {
            "summary": "LV-KRA: 120 crossing attempts in 24 h ≥ high threshold 100",
            "value": "120",
            "alert_id": "crossings-24h.LV-KRA.1",
        },
        "startsAt": _z(0),
        # Alertmanager resolves it by itself three resend intervals after the last push.
        "endsAt": (NOW + timedelta(seconds=180)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def test_a_public_url_adds_a_link_to_the_alert() -> None:
    mapping = AlertMapping(resend_seconds=60, public_url="https://bw.example.org/")
    _, firing = mapping.transition([_t(1, "firing", "high", 0)], NOW)
    assert firing is not None
    link = "https://bw.example.org/api/v1/alerts/crossings-24h.LV-KRA.1"
    assert firing["annotations"]["url"] == link
    assert firing["generatorURL"] == link
    assert mapping.link("a/b c") == "https://bw.example.org/api/v1/alerts/a%2Fb%20c"


def test_a_severity_change_resolves_the_old_label_set_and_fires_the_new_one() -> None:
    history = [_t(1, "firing", "high", 0), _t(2, "firing", "critical", 20, value=300)]
    resolves, firing = MAPPING.transition(history, NOW)
    assert [(a["labels"], a["startsAt"], a["endsAt"]) for a in resolves] == [
        (LABELS | {"severity": "high"}, _z(0), _z(20))
    ]
    assert resolves[0]["annotations"]["value"] == "120"  # as it was while high
    assert firing is not None
    assert firing["labels"] == LABELS | {"severity": "critical"}
    assert firing["annotations"]["value"] == "300"
    assert firing["startsAt"] == _z(20)  # critical since the change, not since the episode


def test_back_to_an_earlier_severity_starts_that_label_set_again() -> None:
    history = [
        _t(1, "firing", "high", 0),
        _t(2, "firing", "critical", 20),
        _t(3, "firing", "high", 40),
    ]
    resolves, firing = MAPPING.transition(history, NOW)
    assert [(a["labels"]["severity"], a["startsAt"], a["endsAt"]) for a in resolves] == [
        ("critical", _z(20), _z(40))
    ]
    assert firing is not None
    assert (firing["labels"]["severity"], firing["startsAt"]) == ("high", _z(40))
    # The periodic re-send of the same alert sends the same startsAt.
    assert MAPPING.active(history, NOW + timedelta(minutes=5))["startsAt"] == _z(40)


def test_a_resolved_transition_ends_its_label_set_at_resolved_at() -> None:
    history = [
        _t(1, "firing", "high", 0),
        _t(2, "firing", "critical", 20),
        _t(3, "resolved", "critical", 50),
    ]
    resolves, firing = MAPPING.transition(history, NOW)
    assert firing is None
    assert [(a["labels"], a["startsAt"], a["endsAt"]) for a in resolves] == [
        (LABELS | {"severity": "critical"}, _z(20), _z(50))
    ]


def test_a_resolve_without_its_history_still_has_start_before_end() -> None:
    resolves, _ = MAPPING.transition([_t(4, "resolved", "high", 50)], NOW)
    assert resolves[0]["startsAt"] <= resolves[0]["endsAt"] == _z(50)
    odd = _t(1, "resolved", "high", 50) | {"started_at": _at(60)}  # clock skew
    resolves, _ = MAPPING.transition([odd], NOW)
    assert resolves[0]["startsAt"] == resolves[0]["endsAt"] == _z(50)


# --- the pusher ----------------------------------------------------------------


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("bw_api_alertmanager_pushes_total", {"outcome": outcome})
    return value or 0.0


class FakeAlertmanager:
    """An httpx transport that records what is posted and answers with ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.posts: list[list[dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v2/alerts"
        if self.status == 0:
            raise httpx.ConnectError("refused", request=request)
        self.posts.append(json.loads(request.content))
        return httpx.Response(self.status)

    def sent(self) -> list[tuple[str, str, str]]:
        """(section, severity, "firing"/"resolved") of everything posted, in order."""
        out = []
        for post in self.posts:
            for a in post:
                ended = datetime.fromisoformat(a["endsAt"]) <= datetime.now(UTC)
                state = "resolved" if ended else "firing"
                out.append((a["labels"]["section"], a["labels"]["severity"], state))
        return out


def _pusher(view: View, **kw: Any) -> tuple[AlertmanagerPusher, FakeAlertmanager]:
    am = FakeAlertmanager()
    pusher = AlertmanagerPusher(
        "http://am.test:9093/", view, transport=httpx.MockTransport(am), **kw
    )
    return pusher, am


def _now(seq: int, status: str, severity: str, section: str = "LV-KRA") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return _t(seq, status, severity, 0, section) | {
        "started_at": now,
        "updated_at": now,
        "resolved_at": now if status == "resolved" else None,
    }


async def test_nothing_is_pushed_while_catching_up_then_one_sync_and_live_transitions() -> None:
    view = View(CAT)
    pusher, am = _pusher(view, resend_seconds=30)
    old = _t(1, "firing", "high", 0, "PL-KUZ")  # firing for long: re-sent
    done = [_t(1, "firing", "high", 0, "LT-MED"), _t(2, "resolved", "high", 5, "LT-MED")]
    for t in [old, *done, _now(1, "firing", "medium")]:
        view.apply_alert(t)
        pusher.on_transition(t)  # the catch-up replay: ignored
    ready = asyncio.Event()
    task = asyncio.create_task(pusher.run(ready))
    try:
        await asyncio.sleep(0.05)
        assert am.posts == []
        ready.set()
        await _wait(lambda: len(am.posts) == 1)
        # The long-resolved LT-MED alert is not sent again.
        assert sorted(am.sent()) == [("LV-KRA", "medium", "firing"), ("PL-KUZ", "high", "firing")]

        change = _now(2, "firing", "high")
        view.apply_alert(change)
        pusher.on_transition(change)
        await _wait(lambda: len(am.posts) == 2)
        assert am.sent()[2:] == [("LV-KRA", "medium", "resolved"), ("LV-KRA", "high", "firing")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unreachable_alertmanager_gets_resolves_again_but_not_stale_firings() -> None:
    view = View(CAT)
    pusher, am = _pusher(view, resend_seconds=60)
    pusher._live = True
    errors = _count("error")
    firing, resolved = _now(1, "firing", "high"), _now(2, "resolved", "high")
    async with httpx.AsyncClient(transport=httpx.MockTransport(am)) as client:
        am.status = 0
        for t in (firing, resolved):
            view.apply_alert(t)
            pusher.on_transition(t)
            await pusher.push(client, pusher._queue.get_nowait())
        assert _count("error") == errors + 2
        assert [a["labels"]["severity"] for a in pusher.pending] == ["high"]

        am.status = 503
        await pusher.push(client, pusher.resend_round(datetime.now(UTC)))
        assert len(pusher.pending) == 1

        am.status = 200
        await pusher.push(client, pusher.resend_round(datetime.now(UTC)))
        assert am.sent()[-1] == ("LV-KRA", "high", "resolved")
        assert pusher.pending == []
        posts = len(am.posts)
        await pusher.push(client, pusher.resend_round(datetime.now(UTC)))
        assert len(am.posts) == posts  # nothing left to send


async def test_a_new_episode_with_the_same_labels_cancels_a_pending_resolve() -> None:
    view = View(CAT)
    pusher, am = _pusher(view)
    pusher._live = True
    async with httpx.AsyncClient(transport=httpx.MockTransport(am)) as client:
        am.status = 0
        for t in (_now(1, "firing", "high"), _now(2, "resolved", "high")):
            view.apply_alert(t)
            pusher.on_transition(t)
            await pusher.push(client, pusher._queue.get_nowait())
        assert pusher.pending
        again = _now(1, "firing", "high") | {"alert_id": "crossings-24h.LV-KRA.2"}
        view.apply_alert(again)
        pusher.on_transition(again)
        assert pusher.pending == []
        am.status = 200
        await pusher.push(client, pusher.resend_round(datetime.now(UTC)))
        assert am.sent() == [("LV-KRA", "high", "firing")]


async def test_a_full_queue_drops_and_counts_but_keeps_resolves() -> None:
    view = View(CAT)
    pusher, _ = _pusher(view, queue_size=1)
    pusher._live = True
    dropped = _count("dropped")
    for t in (_now(1, "firing", "high"), _now(2, "resolved", "high")):
        view.apply_alert(t)
        pusher.on_transition(t)
    assert _count("dropped") == dropped + 1
    assert [a["labels"]["severity"] for a in pusher.pending] == ["high"]


async def test_a_refused_request_is_counted_and_not_retried() -> None:
    view = View(CAT)
    pusher, am = _pusher(view)
    am.status = 400
    rejected = _count("rejected")
    async with httpx.AsyncClient(transport=httpx.MockTransport(am)) as client:
        t = _now(1, "resolved", "high")
        await pusher.push(client, [(MAPPING.transition([t], datetime.now(UTC))[0][0], True)])
    assert _count("rejected") == rejected + 1
    assert pusher.pending == []


def test_a_bad_transition_never_breaks_the_view_consumer() -> None:
    pusher, _ = _pusher(View(CAT))
    pusher._live = True
    dropped = _count("dropped")
    pusher.on_transition({"alert_id": "x", "seq": 1})  # missing fields
    assert _count("dropped") == dropped + 1


async def _wait(predicate: Any, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s")
