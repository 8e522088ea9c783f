"""Alertmanager push: what each transition becomes, and what is retried or dropped."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from services.api.alertmanager import AlertmanagerPusher, AlertMapping, client_auth
from services.api.settings import ApiSettings
from services.api.view import View
from services.common.catalogue import Catalogue
from services.common.errors import ConfigError
from services.common.settings import DEFAULT_CONFIG_DIR, load_settings

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


# --- credentials ------------------------------------------------------------------


def _settings(**env: str) -> ApiSettings:
    return load_settings(ApiSettings, **env)  # type: ignore[arg-type]


def test_credentials_settings_are_secret_and_checked(tmp_path: Path) -> None:
    url = "https://am.test:9093"
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    s = _settings(
        alertmanager_url=url,
        alertmanager_username="bw",
        alertmanager_password="s3cret-pw",
        alertmanager_ca_file=str(ca),
    )
    assert isinstance(s.alertmanager_password, SecretStr)
    assert "s3cret-pw" not in repr(s) and "s3cret-pw" not in str(s.model_dump())
    bearer = _settings(alertmanager_url=url, alertmanager_bearer_token="tok-123")
    assert "tok-123" not in repr(bearer)
    # An absent optional secret key arrives as an empty variable: unset, not "".
    assert _settings(alertmanager_url=url, alertmanager_password="", alertmanager_username="")

    bad = {
        "BW_ALERTMANAGER_USERNAME and BW_ALERTMANAGER_PASSWORD: give both or neither": {
            "alertmanager_url": url,
            "alertmanager_username": "bw",
        },
        "BW_ALERTMANAGER_BEARER_TOKEN: give it or BW_ALERTMANAGER_USERNAME/PASSWORD": {
            "alertmanager_url": url,
            "alertmanager_username": "bw",
            "alertmanager_password": "pw",
            "alertmanager_bearer_token": "tok",
        },
        "BW_ALERTMANAGER_USERNAME is set but BW_ALERTMANAGER_URL is not": {
            "alertmanager_username": "bw",
            "alertmanager_password": "pw",
        },
        "BW_ALERTMANAGER_CA_FILE: needs an https:// BW_ALERTMANAGER_URL": {
            "alertmanager_url": "http://am.test:9093",
            "alertmanager_ca_file": str(ca),
        },
        f"BW_ALERTMANAGER_CA_FILE: no such file {tmp_path / 'nope.pem'}": {
            "alertmanager_url": url,
            "alertmanager_ca_file": str(tmp_path / "nope.pem"),
        },
    }
    for message, env in bad.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            _settings(**env)
        assert "pw" not in str(err.value).replace("PASSWORD", ""), err.value


def _recording_pusher(
    view: View, status: int, auth: httpx.Auth | None
) -> tuple[AlertmanagerPusher, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def am(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="Unauthorized\n" if status == 401 else "")

    pusher = AlertmanagerPusher(
        "https://am.test:9093", view, transport=httpx.MockTransport(am), auth=auth
    )
    return pusher, seen


@pytest.mark.parametrize(
    ("username", "password", "bearer", "header"),
    [
        ("bw", "s3cret-pw", None, "Basic " + base64.b64encode(b"bw:s3cret-pw").decode()),
        (None, None, "tok-123", "Bearer tok-123"),
        (None, None, None, None),
    ],
)
async def test_each_push_carries_the_configured_credentials(
    username: str | None, password: str | None, bearer: str | None, header: str | None
) -> None:
    auth = client_auth(
        username,
        SecretStr(password) if password else None,
        SecretStr(bearer) if bearer else None,
    )
    view = View(CAT)
    pusher, seen = _recording_pusher(view, 200, auth)
    t = _now(1, "firing", "high")
    view.apply_alert(t)
    ready = asyncio.Event()
    ready.set()
    task = asyncio.create_task(pusher.run(ready))
    try:
        await _wait(lambda: len(seen) == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[0].headers.get("authorization") == header


async def test_refused_credentials_are_logged_once_counted_and_kept_for_a_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = View(CAT)
    auth = client_auth("bw", SecretStr("wrong-pw"), None)
    pusher, seen = _recording_pusher(view, 401, auth)
    unauthorized = _count("unauthorized")
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(transport=pusher._transport, auth=auth) as client:
        t = _now(1, "resolved", "high")
        resolve = MAPPING.transition([t], datetime.now(UTC))[0][0]
        for _ in range(3):
            await pusher.push(client, [(resolve, True)])
    assert len(seen) == 3 and _count("unauthorized") == unauthorized + 3
    assert [a["labels"]["severity"] for a in pusher.pending] == ["high"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "refused our credentials (HTTP 401, BasicAuth sent)" in message
    assert "BW_ALERTMANAGER_PASSWORD" in message
    assert "wrong-pw" not in caplog.text
    assert base64.b64encode(b"bw:wrong-pw").decode() not in caplog.text
