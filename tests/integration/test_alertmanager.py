"""Alert transitions reach a real Alertmanager, from every API replica, and heal after an outage.

The real ``prometheus-alertmanager`` (Debian package, 0.25; ``make system-deps``
installs it) runs on free 127.0.0.1 ports with clustering off and its data in
a temporary directory. Two API replicas run as real uvicorn processes and
push to it; transitions are written to the test's alerts topic as the
aggregator would write them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from schemas.models import Alert
from services.api.alertmanager import rfc3339
from services.reports.discrepancy import Comparison, Tracker
from services.runtime.broker import free_port, tail
from services.runtime.tls import ensure_local_tls
from tests.integration.conftest import Deployment, wait_until
from tests.integration.test_api import ApiProcess, produce

pytestmark = pytest.mark.integration

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""
ALERT_ID = "crossings-24h.LV-KRA.1"
PUBLIC = "http://bw.example.test"


class Alertmanager:
    """The real Alertmanager; with ``web_config`` (its --web.config.file: basic auth,
    TLS), ``credentials`` and ``ca`` are what this test's own requests use."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        web_config: dict[str, Any] | None = None,
        credentials: tuple[str, str] | None = None,
        ca: Path | None = None,
    ) -> None:
        assert BINARY is not None
        scheme = "https" if web_config and "tls_server_config" in web_config else "http"
        self.url = f"{scheme}://127.0.0.1:{port}"
        self._headers = {}
        if credentials:
            basic = base64.b64encode(":".join(credentials).encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        self._context = ssl.create_default_context(cafile=str(ca)) if ca else None
        (workdir / "am-data").mkdir()
        config = workdir / "alertmanager.yml"
        config.write_text(CONFIG, encoding="utf-8")
        args = []
        if web_config is not None:
            web = workdir / "web.yml"
            web.write_text(json.dumps(web_config), encoding="utf-8")  # JSON is YAML
            args.append(f"--web.config.file={web}")
        self.log_path = workdir / "alertmanager.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    BINARY,
                    f"--config.file={config}",
                    f"--storage.path={workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                    "--alerts.gc-interval=1s",
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def open(self, path: str, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(self.url + path, headers=self._headers | (headers or {}))
        return urllib.request.urlopen(req, timeout=2, context=self._context)

    def get(self, path: str) -> Any:
        with self.open(path) as resp:
            return json.loads(resp.read() or b"null")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"alertmanager exited\n{tail(self.log_path)}")
            try:
                with self.open("/-/ready") as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_until(ready, 15, "alertmanager ready")

    def active(self, section: str) -> list[dict[str, Any]]:
        """Alerts of ``section`` that Alertmanager counts as active (resolved ones are left out)."""
        alerts = self.get("/api/v2/alerts?active=true&silenced=false&inhibited=false")
        return [a for a in alerts if a["labels"].get("section") == section]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def _transition(
    seq: int, status: str, severity: str, started_at: str, value: int = 120
) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "schema_version": 1,
        "alert_id": ALERT_ID,
        "seq": seq,
        "rule": "crossings-24h",
        "section_id": "LV-KRA",
        "country": "LV",
        "status": status,
        "severity": severity,
        "value": value,
        "threshold": 100,
        "window": "24h",
        "started_at": started_at,
        "updated_at": now,
        "resolved_at": now if status == "resolved" else None,
        "summary": f"LV-KRA: {value} crossing attempts in 24 h ≥ {severity} threshold 100",
    }


def _pushes(api: ApiProcess, outcome: str) -> float:
    with urllib.request.urlopen(api.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    prefix = f'bw_api_alertmanager_pushes_total{{outcome="{outcome}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def _need_alertmanager() -> None:
    if BINARY is None:
        pytest.skip(
            "prometheus-alertmanager not on PATH (Debian package `prometheus-alertmanager`; "
            "`make system-deps` installs it)"
        )


@pytest.fixture
def replicas(deployment: Deployment, tmp_path: Path) -> Iterator[tuple[list[ApiProcess], int]]:
    """Two API replicas pushing to an Alertmanager port where nothing listens yet."""
    _need_alertmanager()
    am_port = free_port()
    env = {
        "BW_AUTH_ENABLED": "false",
        "BW_ALERTMANAGER_URL": f"http://127.0.0.1:{am_port}",
        "BW_ALERTMANAGER_RESEND_SECONDS": "1",
        "BW_ALERTMANAGER_TIMEOUT": "1",
        "BW_PUBLIC_URL": PUBLIC,
    }
    apis = [ApiProcess(deployment, tmp_path / "tokens.json", tmp_path, **env) for _ in range(2)]
    try:
        for api in apis:
            api.wait_ready()
        yield apis, am_port
    finally:
        for api in apis:
            api.stop()


def test_transitions_reach_alertmanager_from_every_replica_and_heal_after_an_outage(
    deployment: Deployment, replicas: tuple[list[ApiProcess], int], tmp_path: Path
) -> None:
    apis, am_port = replicas
    started_at = datetime.now(UTC).isoformat()

    # Alertmanager is down: the API counts the failures and keeps serving.
    produce(deployment, [], [_transition(1, "firing", "high", started_at)])
    wait_until(lambda: all(_pushes(a, "error") >= 1 for a in apis), 10, "failed pushes counted")
    for api in apis:
        status, alerts = api.request("/api/v1/alerts?status=firing", None)
        assert status == 200 and [a["alert_id"] for a in alerts] == [ALERT_ID]

    am = Alertmanager(tmp_path, am_port)
    try:
        am.wait_ready()
        # The periodic re-send brings the firing alert in without a new transition.
        wait_until(lambda: am.active("LV-KRA"), 10, "the firing alert in Alertmanager")
        [alert] = am.active("LV-KRA")  # one alert although two replicas push it
        assert alert["labels"] == {
            "alertname": "crossings-24h",
            "rule": "crossings-24h",
            "section": "LV-KRA",
            "country": "LV",
            "severity": "high",
        }
        link = f"{PUBLIC}/api/v1/alerts/{ALERT_ID}"
        assert alert["annotations"] == {
            "summary": "LV-KRA: 120 crossing attempts in 24 h ≥ high threshold 100",
            "value": "120",
            "alert_id": ALERT_ID,
            "url": link,
        }
        assert alert["generatorURL"] == link
        assert alert["startsAt"] == rfc3339(started_at)
        assert alert["status"]["state"] in {"active", "unprocessed"}
        assert datetime.fromisoformat(alert["endsAt"]) > datetime.now(UTC)
        wait_until(lambda: all(_pushes(a, "ok") >= 1 for a in apis), 5, "both replicas pushing")

        # Severity change: the label set changes, never both at once.
        produce(deployment, [], [_transition(2, "firing", "critical", started_at, 300)])
        seen: list[list[str]] = []

        def severities() -> list[str]:
            now = sorted(a["labels"]["severity"] for a in am.active("LV-KRA"))
            seen.append(now)
            return now

        wait_until(lambda: severities() == ["critical"], 10, "the critical label set only")
        assert all(len(s) <= 1 for s in seen), seen
        [alert] = am.active("LV-KRA")
        assert alert["annotations"]["value"] == "300"

        # The section calms: resolved, and the re-sends do not bring it back.
        produce(deployment, [], [_transition(3, "resolved", "critical", started_at, 40)])
        wait_until(lambda: not am.active("LV-KRA"), 10, "the alert resolved in Alertmanager")
        time.sleep(2.5)  # more than two resend intervals
        assert am.active("LV-KRA") == []
        assert am.get("/api/v2/alerts") == []
    finally:
        am.stop()


# --- push credentials: basic auth and a private CA --------------------------------

USER = "borderwatch"
# Made up per run: the test then searches every log for them.
PASSWORD = "am-pw-" + os.urandom(6).hex()
WRONG = "am-wrong-" + os.urandom(6).hex()


def _basic_auth_users() -> dict[str, Any]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    return {"basic_auth_users": {USER: hashed}}


def _secrets_in(*paths: Path) -> list[str]:
    secrets = [PASSWORD, WRONG]
    secrets += [base64.b64encode(f"{USER}:{s}".encode()).decode() for s in secrets]
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.name}: {s}" for s in secrets if s in text]
    return found


def _api(deployment: Deployment, tmp_path: Path, **env: str) -> ApiProcess:
    base = {
        "BW_AUTH_ENABLED": "false",
        "BW_ALERTMANAGER_RESEND_SECONDS": "1",
        "BW_ALERTMANAGER_TIMEOUT": "1",
        # Every line the API could write: the secrets must be in none.
        "BW_LOG_LEVEL": "DEBUG",
    }
    return ApiProcess(deployment, tmp_path / "tokens.json", tmp_path, **base, **env)


def _log_of(api: ApiProcess) -> str:
    return api.log_path.read_text(encoding="utf-8", errors="replace")


def test_pushes_with_the_right_basic_auth_land_and_wrong_ones_are_refused_and_reported(
    deployment: Deployment, tmp_path: Path
) -> None:
    _need_alertmanager()
    port = free_port()
    am = Alertmanager(tmp_path, port, _basic_auth_users(), credentials=(USER, PASSWORD))
    apis: list[ApiProcess] = []
    try:
        am.wait_ready()
        # Alertmanager itself refuses anyone without the password.
        for headers in ({"Authorization": ""}, {"Authorization": "Basic " + "eDp5"}):
            with pytest.raises(urllib.error.HTTPError) as refused:
                am.open("/api/v2/alerts", headers)
            assert refused.value.code == 401
        url = f"http://127.0.0.1:{port}"
        # A replica with the wrong password pushes first and alone: nothing lands.
        wrong = _api(
            deployment,
            tmp_path,
            BW_ALERTMANAGER_URL=url,
            BW_ALERTMANAGER_USERNAME=USER,
            BW_ALERTMANAGER_PASSWORD=WRONG,
        )
        apis.append(wrong)
        wrong.wait_ready()
        produce(deployment, [], [_transition(1, "firing", "high", datetime.now(UTC).isoformat())])
        wait_until(lambda: _pushes(wrong, "unauthorized") >= 2, 10, "refusals counted")
        assert _pushes(wrong, "ok") == 0
        assert am.active("LV-KRA") == []
        log = _log_of(wrong)
        refusals = [
            line
            for line in log.splitlines()
            if "refused our credentials (HTTP 401, BasicAuth sent)" in line
        ]
        # Said once at ERROR (the retries only at DEBUG, which this run logs too).
        assert [" ERROR " in line for line in refusals[:2]] == [True, False], refusals
        assert "BW_ALERTMANAGER_PASSWORD" in log

        right = _api(
            deployment,
            tmp_path,
            BW_ALERTMANAGER_URL=url,
            BW_ALERTMANAGER_USERNAME=USER,
            BW_ALERTMANAGER_PASSWORD=PASSWORD,
        )
        apis.append(right)
        right.wait_ready()
        wait_until(lambda: am.active("LV-KRA"), 10, "the alert in Alertmanager")
        assert _pushes(right, "ok") >= 1 and _pushes(right, "unauthorized") == 0
        [alert] = am.active("LV-KRA")
        assert alert["labels"]["severity"] == "high"
    finally:
        for api in apis:
            api.stop()
        am.stop()
    leaked = _secrets_in(am.log_path, *(api.log_path for api in apis))
    assert not leaked, leaked


def test_https_alertmanager_is_trusted_through_the_ca_file(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Alertmanager serves TLS with a certificate of a local CA (tls_server_config)."""
    _need_alertmanager()
    tls = ensure_local_tls(tmp_path / "pki")
    web = _basic_auth_users() | {
        "tls_server_config": {"cert_file": str(tls.cert), "key_file": str(tls.key)}
    }
    port = free_port()
    am = Alertmanager(tmp_path, port, web, credentials=(USER, PASSWORD), ca=tls.ca)
    apis: list[ApiProcess] = []
    try:
        am.wait_ready()
        url = f"https://127.0.0.1:{port}"
        creds = {"BW_ALERTMANAGER_USERNAME": USER, "BW_ALERTMANAGER_PASSWORD": PASSWORD}
        untrusting = _api(deployment, tmp_path, BW_ALERTMANAGER_URL=url, **creds)
        apis.append(untrusting)
        untrusting.wait_ready()
        produce(deployment, [], [_transition(1, "firing", "high", datetime.now(UTC).isoformat())])
        # Without the CA the certificate is not trusted: nothing is sent, it says why.
        wait_until(lambda: _pushes(untrusting, "error") >= 1, 10, "the TLS failure counted")
        assert _pushes(untrusting, "ok") == 0
        untrusting.stop()
        assert "CERTIFICATE_VERIFY_FAILED" in _log_of(untrusting)
        assert am.active("LV-KRA") == []

        trusting = _api(
            deployment,
            tmp_path,
            BW_ALERTMANAGER_URL=url,
            BW_ALERTMANAGER_CA_FILE=str(tls.ca),
            **creds,
        )
        apis.append(trusting)
        trusting.wait_ready()
        wait_until(lambda: am.active("LV-KRA"), 10, "the alert in Alertmanager over https")
        assert _pushes(trusting, "ok") >= 1 and _pushes(trusting, "error") == 0
    finally:
        for api in apis:
            api.stop()
        am.stop()
    leaked = _secrets_in(am.log_path, *(api.log_path for api in apis))
    assert not leaked, leaked


def test_a_country_level_discrepancy_alert_reaches_alertmanager_with_its_country(
    deployment: Deployment, replicas: tuple[list[ApiProcess], int], tmp_path: Path
) -> None:
    """A ``report_discrepancy`` transition exactly as the assessor makes it: the
    pseudo-section ``LV-ALL`` is the section label, LV the country."""
    apis, am_port = replicas
    now = datetime.now(UTC)
    rule = "official-vs-field"
    tracker = Tracker(severity={rule: "medium"})
    comparison = Comparison(
        rule=rule,
        country="LV",
        metric="crossing_attempt",
        report_id="vrs-weekend-1",
        official=457,
        qualifier="exact",
        field=96,
        period_label="weekend",
        start=now - timedelta(days=3),
        end=now - timedelta(days=1),
        disagrees=True,
    )
    firing = tracker.apply(comparison, now)
    assert firing is not None
    Alert.model_validate(firing)  # the contract the section id must meet
    am = Alertmanager(tmp_path, am_port)
    try:
        am.wait_ready()
        produce(deployment, [], [firing])
        wait_until(lambda: am.active("LV-ALL"), 10, "the discrepancy alert in Alertmanager")
        [alert] = am.active("LV-ALL")
        assert alert["labels"] == {
            "alertname": rule,
            "rule": rule,
            "section": "LV-ALL",
            "country": "LV",
            "severity": "medium",
        }
        assert alert["annotations"]["summary"] == (
            "LV official crossing_attempt exact 457 (weekend, report vrs-weekend-1) "
            "differs from 96 counted in the field"
        )
        assert alert["annotations"]["value"] == "96"
        assert alert["annotations"]["alert_id"] == f"{rule}.LV-ALL.1"
        assert alert["annotations"]["url"] == f"{PUBLIC}/api/v1/alerts/{rule}.LV-ALL.1"
        # The API counts it among Latvia's alerts (and among LV-* sections).
        for query in ("country=LV", "section=LV-*"):
            status, listed = apis[0].request(f"/api/v1/alerts?{query}", None)
            assert status == 200 and [a["alert_id"] for a in listed] == [f"{rule}.LV-ALL.1"]

        agrees = dataclasses.replace(comparison, official=100, disagrees=False)
        resolved = tracker.apply(agrees, now + timedelta(seconds=1))
        assert resolved is not None and resolved["status"] == "resolved"
        produce(deployment, [], [resolved])
        wait_until(lambda: not am.active("LV-ALL"), 10, "the discrepancy resolved there")
    finally:
        am.stop()
