"""Optional push of alert transitions to a Prometheus Alertmanager (v2 API).

Enabled by ``BW_ALERTMANAGER_URL`` (e.g. ``http://alertmanager:9093``); the API
then ``POST``s to ``{url}/api/v2/alerts``. Each borderwatch alert becomes one
Alertmanager alert per severity it holds:

- labels ``alertname`` (= rule id), ``rule``, ``section``, ``country``,
  ``severity``; annotations ``summary``, ``value``, ``alert_id`` and, with
  ``BW_PUBLIC_URL``, ``url`` (also ``generatorURL``), a link to
  ``/api/v1/alerts/{id}``;
- while firing, ``endsAt`` lies three times ``BW_ALERTMANAGER_RESEND_SECONDS`` ahead
  and the alert is re-sent every resend interval, as Alertmanager expects of a
  client (if we stop sending, it resolves the alert by itself at ``endsAt``);
- a resolved transition is sent with ``endsAt = resolved_at``, and re-sent
  on the next resend rounds until Alertmanager accepts it;
- a severity change changes the label set, so the old label set is resolved
  (``endsAt`` = time of the change) in the same request that fires the new
  one: Alertmanager never shows both as active.

Which replica pushes: every one. Alertmanager identifies an alert by its label
set and merges what it receives for the same set, so replicas that read the
same ``bw.alerts`` topic push the same alerts (same labels, same ``startsAt``,
same resolved ``endsAt``) idempotently: a firing alert's ``endsAt`` differs
between replicas by a few milliseconds and Alertmanager keeps the later one.
This needs no leader election, and the pushes go on while any replica is up
(HA-safe). The price: a replica that lags behind the topic may re-send an
alert as firing just after another replica resolved it; it re-sends the
resolve itself as soon as it catches up (normally within milliseconds, well
inside Alertmanager's ``group_wait``).

Credentials: basic auth (``BW_ALERTMANAGER_USERNAME``/``_PASSWORD``, what
Alertmanager's own ``--web.config.file`` checks) or a bearer token
(``BW_ALERTMANAGER_BEARER_TOKEN``, for a proxy in front of it), and
``BW_ALERTMANAGER_CA_FILE`` for an https Alertmanager whose certificate a
private CA signed. Secrets stay ``SecretStr`` until the request is built and
are never logged. A refusal of the credentials (401/403) is logged once per
outage with the variables to check, counted as ``outcome="unauthorized"``, and
retried like an outage (resolves kept): fixing the secret and restarting heals it.

Nothing here blocks the API or the feeds: the Kafka reader's callback only
maps the transition and puts it on a bounded queue (full: dropped and counted;
firing alerts come back with the next re-send, resolved ones are kept for it),
and one background task does the HTTP with short timeouts. Failures are logged
(once per outage) and counted in ``bw_api_alertmanager_pushes_total{outcome}``.
While the view catches up at start nothing is pushed; once it is ready, the
firing alerts and those that changed in the last few resend intervals are
sent in one go (they may have changed while this replica was down).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import Counter
from pydantic import SecretStr

from services.api.view import View

log = logging.getLogger(__name__)

PUSHES = Counter(
    "bw_api_alertmanager_pushes_total",
    "Requests to Alertmanager (ok, error = unreachable, TLS failure or 5xx and retried, "
    "unauthorized = 401/403 and retried, rejected = other 4xx, dropped = queue full)",
    ["outcome"],
)
for _outcome in ("ok", "error", "unauthorized", "rejected", "dropped"):
    PUSHES.labels(_outcome)

# Alertmanager keeps a firing alert this many resend intervals past the last push.
ENDS_AFTER_RESENDS = 3

Transition = dict[str, Any]
AmAlert = dict[str, Any]
LabelKey = tuple[tuple[str, str], ...]


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def rfc3339(value: str | datetime) -> str:
    """UTC, millisecond precision, ``Z``: what Alertmanager echoes back."""
    return _time(value).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def label_key(alert: AmAlert) -> LabelKey:
    """Alertmanager's identity of an alert: its label set."""
    return tuple(sorted(alert["labels"].items()))


@dataclass(frozen=True)
class AlertMapping:
    """Maps borderwatch alert transitions to Alertmanager postable alerts (pure)."""

    resend_seconds: float = 60.0
    public_url: str | None = None

    def labels(self, transition: Transition) -> dict[str, str]:
        return {
            "alertname": str(transition["rule"]),
            "rule": str(transition["rule"]),
            "section": str(transition["section_id"]),
            "country": str(transition["country"]),
            "severity": str(transition["severity"]),
        }

    def link(self, alert_id: str) -> str | None:
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/api/v1/alerts/{quote(alert_id, safe='')}"

    def _alert(self, transition: Transition, starts: datetime, ends: datetime) -> AmAlert:
        annotations = {
            "summary": str(transition["summary"]),
            "value": str(transition["value"]),
            "alert_id": str(transition["alert_id"]),
        }
        out: AmAlert = {
            "labels": self.labels(transition),
            "annotations": annotations,
            # Alertmanager refuses startsAt after endsAt (400 for the whole request).
            "startsAt": rfc3339(min(starts, ends)),
            "endsAt": rfc3339(ends),
        }
        link = self.link(transition["alert_id"])
        if link:
            annotations["url"] = link
            out["generatorURL"] = link
        return out

    @staticmethod
    def severity_since(history: Sequence[Transition]) -> datetime:
        """When the last transition's severity began: its label set's ``startsAt``.

        The episode's ``started_at`` if it has held that severity from the
        start, else the ``updated_at`` of the transition that changed to it.
        Deterministic from the topic, so every replica sends the same value.
        """
        first = history[-1]
        for transition in reversed(history[:-1]):
            if transition["status"] != "firing" or transition["severity"] != first["severity"]:
                break
            first = transition
        return _time(first["started_at"] if first["seq"] == 1 else first["updated_at"])

    def active(self, history: Sequence[Transition], now: datetime) -> AmAlert:
        """The (re-)send of a firing alert: ``history`` ends with a firing transition."""
        ends = now + timedelta(seconds=ENDS_AFTER_RESENDS * self.resend_seconds)
        return self._alert(history[-1], self.severity_since(history), ends)

    def transition(
        self, history: Sequence[Transition], now: datetime
    ) -> tuple[list[AmAlert], AmAlert | None]:
        """What to send for the last transition of ``history`` (one alert's, by ``seq``).

        Returns (label sets to resolve, label set to fire or None).
        """
        current = history[-1]
        if current["status"] == "resolved":
            ends = _time(current["resolved_at"] or current["updated_at"])
            return [self._alert(current, self.severity_since(history), ends)], None
        resolves = []
        previous = history[-2] if len(history) > 1 else None
        if (
            previous is not None
            and previous["status"] == "firing"
            and previous["severity"] != current["severity"]
        ):
            changed = _time(current["updated_at"])
            resolves.append(self._alert(previous, self.severity_since(history[:-1]), changed))
        return resolves, self.active(history, now)


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer …``, read from the SecretStr only when a request is sent."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._token.get_secret_value()
        yield request


class _BasicAuth(httpx.Auth):
    """Basic auth whose password stays a SecretStr (httpx.BasicAuth keeps it in clear)."""

    def __init__(self, username: str, password: SecretStr) -> None:
        self._username = username
        self._password = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        auth = httpx.BasicAuth(self._username, self._password.get_secret_value())
        yield from auth.auth_flow(request)


def client_auth(
    username: str | None, password: SecretStr | None, bearer_token: SecretStr | None
) -> httpx.Auth | None:
    """The credentials for Alertmanager requests (settings checked that they are consistent)."""
    if bearer_token is not None:
        return BearerAuth(bearer_token)
    if username is not None and password is not None:
        return _BasicAuth(username, password)
    return None


def client_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """Verify Alertmanager's certificate against ``ca_file``, else the system's CAs."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(ca_file))


# What the pusher sends: an Alertmanager alert, and whether it is a resolve
# (those are kept and re-sent until accepted; firing ones come back every round).
Outgoing = tuple[AmAlert, bool]


def _outgoing(resolves: list[AmAlert], firing: AmAlert | None) -> list[Outgoing]:
    return [(a, True) for a in resolves] + ([(firing, False)] if firing else [])


class AlertmanagerPusher:
    """Feeds Alertmanager from the view: transitions as they come, firing alerts periodically.

    ``on_transition`` is called by the view consumer (synchronously, never
    blocks); ``run`` is the background task, owned by the app's lifespan.
    """

    def __init__(
        self,
        url: str,
        view: View,
        *,
        resend_seconds: float = 60.0,
        timeout: float = 2.0,
        public_url: str | None = None,
        queue_size: int = 1000,
        batch_size: int = 500,
        max_pending: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
        auth: httpx.Auth | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/v2/alerts"
        self._auth = auth
        self._verify = verify
        self._unauthorized = False
        if auth is not None and self.endpoint.startswith("http://"):
            log.warning("credentials for alertmanager at %s go in clear text (http)", self.endpoint)
        self.mapping = AlertMapping(resend_seconds, public_url)
        self._view = view
        self._resend = resend_seconds
        self._timeout = timeout
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._transport = transport
        self._queue: asyncio.Queue[list[Outgoing]] = asyncio.Queue(queue_size)
        # Resolves not yet accepted by Alertmanager, by label set.
        self._pending: OrderedDict[LabelKey, AmAlert] = OrderedDict()
        self._live = False
        self._failing = False

    @property
    def pending(self) -> list[AmAlert]:
        return list(self._pending.values())

    def on_transition(self, transition: Transition) -> None:
        """A new transition reached the view: queue what Alertmanager should learn.

        Never raises: it runs inside the view consumer's loop.
        """
        if not self._live:
            return  # catching up: the first sync in ``run`` covers it
        try:
            self._enqueue(transition)
        except Exception:
            PUSHES.labels("dropped").inc()
            log.exception("alert %s not pushed to alertmanager", transition.get("alert_id"))

    def _enqueue(self, transition: Transition) -> None:
        history = self._view.alert(transition["alert_id"]) or [transition]
        if history[-1]["seq"] != transition["seq"]:
            return  # a late redelivery of an older transition; the newer one was sent
        resolves, firing = self.mapping.transition(history, datetime.now(UTC))
        if firing is not None:
            # A new episode with the same labels: an old resolve must not follow it.
            self._pending.pop(label_key(firing), None)
        items = _outgoing(resolves, firing)
        try:
            self._queue.put_nowait(items)
        except asyncio.QueueFull:
            PUSHES.labels("dropped").inc()
            log.warning(
                "alertmanager queue full; dropped alert %s seq %s (sent with the next round)",
                transition["alert_id"],
                transition["seq"],
            )
            self._keep(items)

    async def run(self, ready: asyncio.Event) -> None:
        """Push until cancelled: a first sync once the view is ready, then as things come."""
        await ready.wait()
        loop = asyncio.get_running_loop()
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            # httpx logs every request at INFO: one line per replica per resend round.
            httpx_log.setLevel(logging.WARNING)
        async with httpx.AsyncClient(
            timeout=self._timeout, transport=self._transport, auth=self._auth, verify=self._verify
        ) as client:
            self._live = True
            # No await between going live and this snapshot: no transition is missed.
            first: list[Outgoing] | None = self.first_sync(datetime.now(UTC))
            next_round = loop.time() + self._resend
            while True:
                try:
                    if first is not None:
                        items, first = first, None
                        await self.push(client, items)
                    batch: list[Outgoing] | None = None
                    wait = next_round - loop.time()
                    if wait > 0:
                        try:
                            async with asyncio.timeout(wait):
                                batch = await self._queue.get()
                        except TimeoutError:
                            pass
                    if batch is not None:
                        while len(batch) < self._batch_size and not self._queue.empty():
                            batch += self._queue.get_nowait()
                        await self.push(client, batch)
                    if loop.time() >= next_round:
                        next_round = loop.time() + self._resend
                        await self.push(client, self.resend_round(datetime.now(UTC)))
                except Exception:
                    # A bug must not end the pushes for good; the next round repairs.
                    PUSHES.labels("error").inc()
                    log.exception("alertmanager pusher error")
                    await asyncio.sleep(min(self._resend, 5.0))

    def first_sync(self, now: datetime) -> list[Outgoing]:
        """Firing alerts, plus every alert that changed recently (maybe while we were down)."""
        recent = now - timedelta(seconds=(ENDS_AFTER_RESENDS + 1) * self._resend)
        out: list[Outgoing] = []
        for history in list(self._view.alerts.values()):
            if not history:
                continue
            if _time(history[-1]["updated_at"]) >= recent:
                out += _outgoing(*self.mapping.transition(history, now))
            elif history[-1]["status"] == "firing":
                out.append((self.mapping.active(history, now), False))
        return out

    def resend_round(self, now: datetime) -> list[Outgoing]:
        """Every firing alert again, and the resolves Alertmanager has not accepted yet."""
        firing = [
            self.mapping.active(history, now)
            for history in list(self._view.alerts.values())
            if history and history[-1]["status"] == "firing"
        ]
        firing_keys = {label_key(a) for a in firing}
        # Past this age Alertmanager has resolved the alert by itself (its endsAt passed).
        horizon = now - timedelta(seconds=(ENDS_AFTER_RESENDS + 1) * self._resend)
        for key, alert in list(self._pending.items()):
            if key in firing_keys or _time(alert["endsAt"]) < horizon:
                del self._pending[key]
        return [(a, False) for a in firing] + [(a, True) for a in self._pending.values()]

    async def push(self, client: httpx.AsyncClient, items: list[Outgoing]) -> None:
        for start in range(0, len(items), self._batch_size):
            await self._post(client, items[start : start + self._batch_size])

    async def _post(self, client: httpx.AsyncClient, items: list[Outgoing]) -> None:
        if not items:
            return
        try:
            response = await client.post(self.endpoint, json=[alert for alert, _ in items])
        except httpx.HTTPError as exc:
            self._failed(f"{type(exc).__name__}: {exc}", items)
            return
        if response.is_success:
            PUSHES.labels("ok").inc()
            for alert, resolves in items:
                if resolves:
                    self._pending.pop(label_key(alert), None)
            if self._failing or self._unauthorized:
                self._failing = self._unauthorized = False
                log.info("alertmanager at %s reachable again", self.endpoint)
        elif response.status_code in (401, 403):
            # Wrong or missing credentials: nothing gets in until they are fixed, so
            # say so loudly once (not every round), and keep the resolves for then.
            PUSHES.labels("unauthorized").inc()
            level = logging.DEBUG if self._unauthorized else logging.ERROR
            self._unauthorized = True
            log.log(
                level,
                "alertmanager at %s refused our credentials (HTTP %s, %s sent): check "
                "BW_ALERTMANAGER_USERNAME/BW_ALERTMANAGER_PASSWORD or "
                "BW_ALERTMANAGER_BEARER_TOKEN; retrying every %gs",
                self.endpoint,
                response.status_code,
                type(self._auth).__name__.lstrip("_") if self._auth else "no credentials",
                self._resend,
            )
            self._keep(items)
        elif response.is_client_error:
            # The same request would be refused again. (Alertmanager stores the
            # valid alerts of a request it refuses in part.)
            PUSHES.labels("rejected").inc()
            log.error(
                "alertmanager refused %d alerts: HTTP %s %s",
                len(items),
                response.status_code,
                response.text[:300],
            )
        else:
            self._failed(f"HTTP {response.status_code}", items)

    def _failed(self, why: str, items: list[Outgoing]) -> None:
        PUSHES.labels("error").inc()
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(
            level,
            "alertmanager push to %s failed (%s); firing alerts are re-sent every %gs, "
            "resolves kept until accepted",
            self.endpoint,
            why,
            self._resend,
        )
        self._keep(items)

    def _keep(self, items: list[Outgoing]) -> None:
        for alert, resolves in items:
            if resolves:
                key = label_key(alert)
                self._pending.pop(key, None)
                self._pending[key] = alert
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)
