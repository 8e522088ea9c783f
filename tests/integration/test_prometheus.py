"""A real Prometheus scrapes a running borderwatch; PromQL must show exactly what was posted.

Debian's ``prometheus`` binary (``scripts/system-deps.sh``) is started by the
test on a free 127.0.0.1 port with a temporary config and data directory, and
stopped by PID. It scrapes a real aggregator worker (or two), ingest and the
API, each a separate process on the session's embedded Kafka broker, every
second, and evaluates the repository's rule files.

- After posting known events, PromQL through Prometheus's HTTP API returns
  exactly the posted counts, per section, kind and country.
- Every query of both Grafana dashboards, with the template variables filled
  in, parses and returns at least one series (Grafana itself cannot be
  installed on this machine; this is the proof that its panels have data).
- ``promtool check metrics`` is clean for every service's /metrics.
- With two workers, sums over workers count every section once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from schemas.models import KINDS
from services.api.settings import UVICORN_FLAGS
from services.common.catalogue import Catalogue
from services.grafana import dashboards
from services.runtime.broker import free_port, tail
from services.runtime.supervisor import wait_http_ready
from tests.integration.conftest import REPO, Deployment, Worker, event, wait_until

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool")
RULE_FILES = [
    REPO / "deploy" / "prometheus" / n for n in ("alerts.yml", "recording.yml", "border-alerts.yml")
]
CATALOGUE = Catalogue.load(REPO / "deploy" / "config" / "sections.yaml")

if not Path(PROMETHEUS).is_file():
    pytest.skip(
        "Debian's prometheus is not installed (scripts/system-deps.sh installs it)",
        allow_module_level=True,
    )


class HttpService:
    """ingest or the API as its own uvicorn process, as `borderwatch up` runs them."""

    def __init__(self, name: str, dep: Deployment, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = workdir / f"{name}-{self.port}.log"
        env = dep.env()
        env.update({"BW_AUTH_ENABLED": "false", "BW_PORT": str(self.port)})
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{name}.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            *(UVICORN_FLAGS if name == "api" else ()),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_http_ready(
            self.url + "/readyz",
            self.process,
            name=self.name,
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
                self.process.wait(timeout=10)


class Prometheus:
    """Debian's prometheus binary, scraping the given targets every second."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]]) -> None:
        self.port = free_port()
        self.dir = workdir / f"prometheus-{self.port}"
        self.dir.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in RULE_FILES],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]}
                for job, hosts in targets.items()
            ],
        }
        config_path = self.dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = self.dir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http_ready(
            self.url + "/-/ready",
            self.process,
            name="prometheus",
            log_path=self.log_path,
            timeout=30,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
                body = orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422: the query did not parse or run
            body = orjson.loads(exc.read())
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def query_range(self, expr: str, seconds: float = 60) -> list[dict[str, Any]]:
        end = time.time()
        result: list[dict[str, Any]] = self.api(
            "query_range", query=expr, start=str(end - seconds), end=str(end), step="1"
        )["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def by(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1])
            for s in self.query(expr)
        }

    def targets_up(self, n: int) -> bool:
        active = self.api("targets")["activeTargets"]
        return len(active) == n and all(t["health"] == "up" for t in active)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@pytest.fixture
def http_services(deployment: Deployment, tmp_path: Path) -> Iterator[dict[str, HttpService]]:
    started = {name: HttpService(name, deployment, tmp_path) for name in ("ingest", "api")}
    try:
        for service in started.values():
            service.wait_ready()
        yield started
    finally:
        for service in started.values():
            service.stop()


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, list[str]]], Prometheus]]:
    running: list[Prometheus] = []

    def start(targets: dict[str, list[str]]) -> Prometheus:
        prom = Prometheus(tmp_path, targets)
        running.append(prom)
        return prom

    try:
        yield start
    finally:
        for prom in running:
            prom.stop()


def _targets(workers: list[Worker], services: dict[str, HttpService]) -> dict[str, list[str]]:
    return {
        "aggregator": [f"127.0.0.1:{w.port}" for w in workers],
        "ingest": [f"127.0.0.1:{services['ingest'].port}"],
        "api": [f"127.0.0.1:{services['api'].port}"],
    }


def _post(ingest: HttpService, events: list[dict[str, Any]]) -> dict[str, Any]:
    resp = httpx.post(ingest.url + "/v1/field-events", json=events, timeout=30)
    assert resp.status_code in (202, 422), resp.text
    body: dict[str, Any] = resp.json()
    return body


def _known_events(sections: list[str], now: datetime) -> tuple[list[list[dict[str, Any]]], Any]:
    """Posts (lists of events) and the expected 24 h counts per (section, kind)."""
    expected: dict[tuple[str, str], int] = defaultdict(int)
    posts = []
    n = 0
    hour = now.replace(minute=0, second=0, microsecond=0)
    for round_ in range(3):
        batch = []
        for i, section in enumerate(sections):
            for j, kind in enumerate(("detection", "crossing_attempt", "apprehension")):
                count = 1 + (i + j + round_) % 5
                # All inside the current hour, so 1 h, 24 h and 7 d windows all hold them.
                at = hour + (now - hour) * ((n % 10) / 10)
                batch.append(event(section, kind, count, at))
                expected[(section, kind)] += count
                n += 1
        posts.append(batch)
    return posts, expected


LV_DAILY = (
    "Pēdējās diennakts laikā nelikumīgi šķērsot valsts robežu atturētas 57 personas. "
    "Migranti meta akmeņus robežsargu patruļai."
)
PL_DAILY = "W ciągu ostatniej doby odnotowano 84 próby nielegalnego przekroczenia granicy."
MILITARY = "The Belarusian side brought the migrants to the border in military vehicles."


def _reports(now: datetime) -> list[dict[str, Any]]:
    at = now.replace(microsecond=0)
    day_start = (at - timedelta(days=1)).isoformat()

    def report(rid: str, country: str, kind: str, lang: str, text: str) -> dict[str, Any]:
        return {
            "report_id": rid,
            "source": {"name": f"{kind} source", "type": kind},
            "country": country,
            "published_at": at.isoformat(),
            "title": rid,
            "language": lang,
            "text": text,
        }

    pl = report("prom-pl-1", "PL", "official", "pl", PL_DAILY)
    pl["figures"] = [
        {
            "kind": "apprehension",
            "count": 12,
            "period_start": day_start,
            "period_end": at.isoformat(),
        }
    ]
    return [
        report("prom-lv-1", "LV", "official", "lv", LV_DAILY),
        pl,
        report("prom-media-1", "LV", "media", "en", MILITARY),
    ]


def _reports_counted_exactly(
    prom: Prometheus,
    ingest: HttpService,
    api: HttpService,
    field: dict[tuple[str, str], int],
    now: datetime,
) -> None:
    """Post three reports; every report counter equals what the published analyses hold."""
    reports = _reports(now)
    resp = httpx.post(ingest.url + "/v1/reports", json=reports, timeout=30)
    assert resp.status_code == 202, resp.text

    def analyses() -> list[dict[str, Any]] | None:
        out = []
        for r in reports:
            got = httpx.get(f"{api.url}/api/v1/reports/{r['report_id']}", timeout=10)
            if got.status_code != 200 or not got.json().get("analysis"):
                return None
            out.append(got.json()["analysis"] | {"source_type": r["source"]["type"]})
        return out

    wait_until(analyses, 60, "the API serving the three reports with their analyses")
    done = analyses()
    assert done is not None
    analysed: dict[tuple[str, ...], float] = defaultdict(float)
    figures: dict[tuple[str, ...], float] = defaultdict(float)
    signals: dict[tuple[str, ...], float] = defaultdict(float)
    for r, a in zip(reports, done, strict=True):
        analysed[(r["country"], a["language"] or "none", r["source"]["type"])] += 1
        for f in a["figures"]:
            figures[(f["area"], f["metric"], f["source"])] += 1
        for sig in a["signals"]:
            signals[(sig["area"], sig["signal"])] += 1
    # What the analyser read (tests/integration/test_reports.py pins the details).
    assert ("LV", "crossing_attempt", "text") in figures and (
        "PL",
        "apprehension",
        "feed",
    ) in figures
    assert signals, done

    wait_until(
        lambda: prom.value("sum(bw_reports_analysed_total)") == len(reports),
        30,
        f"Prometheus showing {len(reports)} reports analysed",
    )
    assert (
        prom.by("bw_reports_analysed_total > 0", "country", "language", "source_type") == analysed
    )
    assert prom.by("bw_report_figures_total > 0", "country", "metric", "source") == figures
    assert prom.by("bw_report_signals_total > 0", "country", "signal") == signals
    assert prom.value("sum(bw_aggregator_bad_reports_total)") == 0
    assert prom.value("sum(bw_aggregator_report_analysis_seconds_count)") == len(reports)

    # Official one-day figures beside the field's 24 h counts of the same kind:
    # 57 in LV against 21 counted, 84 in PL against 8: both discrepancy alerts fire.
    wait_until(
        lambda: prom.value("sum(bw_report_discrepancy_transitions_total)") == 2,
        60,
        "two discrepancy transitions (LV and PL firing)",
    )
    transitions = prom.by("bw_report_discrepancy_transitions_total > 0", "country", "status")
    assert transitions == {("LV", "firing"): 1.0, ("PL", "firing"): 1.0}
    fired = httpx.get(api.url + "/api/v1/alerts", params={"status": "firing"}, timeout=10).json()
    assert sorted(a["country"] for a in fired if a["rule"] == "official-vs-field") == ["LV", "PL"]
    official = prom.by("bw_report_official_figure", "country", "kind")
    assert official == {
        ("LV", "crossing_attempt"): 57.0,
        ("PL", "crossing_attempt"): 84.0,
        ("PL", "apprehension"): 12.0,
    }
    against = prom.by(
        'sum by (country, kind) (bw_section_events{window="24h"}) '
        "and on (country, kind) max by (country, kind) (bw_report_official_figure)",
        "country",
        "kind",
    )
    assert against == {
        (c, k): float(sum(n for (s, kind), n in field.items() if kind == k and s[:2] == c))
        for c, k in official
    }
    assert against[("LV", "crossing_attempt")] == 21 and against[("PL", "crossing_attempt")] == 8
    # One worker owns every country: one stage and six factor levels for each.
    wait_until(
        lambda: prom.value("count(bw_assessment_stage)") == len(CATALOGUE.countries()),
        30,
        "an assessment of every country",
    )
    assert prom.value("count(bw_assessment_factor_level)") == 6 * len(CATALOGUE.countries())


def _fill(expr: str, country: str, section: str) -> str:
    return (
        expr.replace("$country", country)
        .replace("$section", section)
        .replace("$__rate_interval", "30s")
    )


def test_prometheus_sees_exactly_the_posted_counts_and_every_dashboard_query_has_data(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    http_services: dict[str, HttpService],
    start_prometheus: Callable[[dict[str, list[str]]], Prometheus],
) -> None:
    worker = start_worker()
    ingest = http_services["ingest"]
    prom = start_prometheus(_targets([worker], http_services))
    wait_until(lambda: prom.targets_up(3), 30, "Prometheus scraping all three services")

    now = datetime.now(UTC)
    sections = ["LV-KRA", "LV-SIL", "LT-MED", "PL-BIA"]
    posts, expected = _known_events(sections, now)
    records = 0
    for batch in posts:
        body = _post(ingest, batch)
        assert len(body["accepted"]) == len(batch), body
        records += len({e["section_id"] for e in batch})
    # One military activity in LV-KRA fires an alert (rule military-activity, high).
    _post(ingest, [event("LV-KRA", "military_activity", 1, now)])
    expected[("LV-KRA", "military_activity")] += 1
    records += 1
    # One refused event (unknown section) for the rejects panel.
    refused = _post(ingest, [event("XX-NOPE", "detection", 1, now)])
    assert refused["errors"], refused
    total = sum(expected.values())

    wait_until(
        lambda: prom.value('sum(bw_section_events{window="24h"})') == total,
        60,
        f"Prometheus showing {total} events in the 24 h window",
    )
    # Exactly the posted counts, per section and kind, in every window (zeros included).
    for window in ("1h", "24h", "7d"):
        got = prom.by(f'bw_section_events{{window="{window}"}}', "section", "kind")
        assert len(got) == len(CATALOGUE) * len(KINDS)
        want = {(s, k): float(expected.get((s, k), 0)) for s in CATALOGUE for k in KINDS}
        assert got == want, window
    # Per country, through the recording rule as the alerts read it.
    wait_until(
        lambda: prom.value('sum(country:bw_section_events:sum{window="24h"})') == total,
        30,
        "the recording rules caught up",
    )
    by_country = prom.by('country:bw_section_events:sum{window="24h"}', "country", "kind")
    for country in CATALOGUE.countries():
        for kind in KINDS:
            want = sum(n for (s, k), n in expected.items() if k == kind and s.startswith(country))
            assert by_country[(country, kind)] == want, (country, kind)
    # What the aggregator counted and ingest accepted agree with the posts.
    # (ingest is another target: its last scrape may predate the last post.)
    posted = sum(len(b) for b in posts) + 1
    assert prom.value("sum(bw_aggregator_events_counted_total)") == posted
    wait_until(
        lambda: (
            prom.value("sum(bw_ingest_events_accepted_total)") == posted
            and prom.value('sum(bw_ingest_events_rejected_total{reason="section"})') == 1
        ),
        10,
        f"ingest's counters: {posted} accepted, 1 refused for an unknown section",
    )
    # Levels and alerts: LV-KRA is high (2) with one firing alert; the rest low.
    levels = prom.by("bw_section_impact_level", "section")
    assert levels[("LV-KRA",)] == 2
    assert sum(levels.values()) == 2
    firing = prom.by("bw_alerts_firing > 0", "country", "severity", "rule")
    assert firing == {("LV", "high", "military-activity"): 1.0}
    assert len(prom.query("bw_alerts_firing")) == len(CATALOGUE.countries()) * 4 * len(
        prom.by("count by (rule) (bw_alerts_firing)", "rule")
    )
    info = prom.by("bw_section_info", "section", "name", "country", "neighbour")
    assert {k[0] for k in info} == set(CATALOGUE)
    assert info[("LV-KRA", CATALOGUE["LV-KRA"].name, "LV", CATALOGUE["LV-KRA"].neighbour)] == 1
    ages = prom.by("bw_section_last_event_age_seconds", "section")
    assert {s for (s,) in ages} == set(sections)
    assert all(0 <= a < 3600 + 60 for a in ages.values())
    # Pipeline SLOs: one observation per record, after it was published.
    wait_until(
        lambda: prom.value("sum(bw_pipeline_ingest_to_published_seconds_count)") == records,
        30,
        f"{records} ingest -> published observations",
    )
    mean = prom.value(
        "sum(bw_pipeline_ingest_to_published_seconds_sum) / sum(bw_pipeline_ingest_to_published_seconds_count)"
    )
    assert mean is not None and 0 < mean < 10
    assert prom.value("sum(bw_pipeline_event_lag_seconds_count)") == records
    lag = prom.by("bw_aggregator_input_lag_records", "partition")
    assert len(lag) == deployment.partitions and set(lag.values()) == {0.0}

    # Reports through ingest: the analyses the API serves, counted exactly.
    _reports_counted_exactly(prom, ingest, http_services["api"], expected, now)

    # The dashboards' variables have values, and every panel query has data.
    countries = prom.api("label/country/values", **{"match[]": "bw_section_info"})
    assert set(countries) == set(CATALOGUE.countries())
    queries = dashboards.queries()
    assert len(queries) >= 20
    # A rate needs two scrapes of a series inside its window: give new series a few.
    # Variables as one value each, and as "All" (the dashboards' allValue is .*).
    deadline = time.monotonic() + 30
    pending = [
        (q, _fill(q.expr, c, s)) for q in queries for c, s in (("LV", "LV-KRA"), (".*", ".*"))
    ]
    while pending:
        empty = []
        for q, expr in pending:
            assert "$" not in expr, f"{q.panel}: variable left in {expr}"
            result = prom.query(expr) if q.instant else prom.query_range(expr)
            if not result:
                empty.append((q, expr))
        pending = empty
        if pending and time.monotonic() > deadline:
            lines = [f"{q.dashboard} / {q.panel}: {expr}" for q, expr in pending]
            raise AssertionError("queries without a series:\n" + "\n".join(lines))
        if pending:
            time.sleep(1)
    # A query that does not parse is an error, not an empty result (the check above bites).
    with pytest.raises(AssertionError, match=r"parse error|bad_data"):
        prom.query("sum by (section (bw_section_events)")

    # promtool check metrics: every service's exposition is clean.
    if PROMTOOL is None:
        pytest.skip("promtool not on PATH")
    for name, url in (
        ("aggregator", worker.url),
        ("ingest", ingest.url),
        ("api", http_services["api"].url),
    ):
        text = httpx.get(url + "/metrics", timeout=10).text
        assert "_created" not in text, name
        result = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0 and not result.stdout.strip(), (
            f"{name}: promtool check metrics:\n{result.stdout}{result.stderr}"
        )
    assert worker.process.poll() is None, worker.log()
    assert prom.process.poll() is None, tail(prom.log_path, 20)


def test_two_workers_summed_never_count_a_section_twice(
    deployment: Deployment,
    start_worker: Callable[..., Worker],
    http_services: dict[str, HttpService],
    start_prometheus: Callable[[dict[str, list[str]]], Prometheus],
) -> None:
    first = start_worker()
    # The first worker owns every country and exports its assessment before the
    # second joins: what it hands over must then leave its /metrics (no stale series).
    wait_until(
        lambda: first.metrics().count("bw_assessment_stage{") == len(CATALOGUE.countries()),
        60,
        "the first worker's assessment of every country",
    )
    workers = [first, start_worker()]
    prom = start_prometheus(_targets(workers, http_services))
    wait_until(lambda: prom.targets_up(4), 30, "Prometheus scraping both workers, ingest and API")
    # Both workers own sections (the group has rebalanced) and together own each once.
    n = len(CATALOGUE)

    def split() -> object:
        per_worker = prom.by("count by (instance) (bw_section_info)", "instance")
        return len(per_worker) == 2 and sum(per_worker.values()) == n and per_worker

    wait_until(split, 120, "two workers sharing the catalogue's sections")
    now = datetime.now(UTC)
    posts, expected = _known_events(list(CATALOGUE), now)
    for batch in posts:
        assert len(_post(http_services["ingest"], batch)["accepted"]) == len(batch)
    total = sum(expected.values())
    wait_until(
        lambda: prom.value('sum(bw_section_events{window="24h"})') == total,
        60,
        f"the sum over both workers equal to the {total} posted events",
    )
    assert prom.value("max(count by (section) (bw_section_info))") == 1
    assert prom.value("sum(bw_section_info)") == n
    assert prom.value("count(bw_section_impact_level)") == n
    got = prom.by('sum by (section, kind) (bw_section_events{window="7d"})', "section", "kind")
    assert got == {(s, k): float(expected.get((s, k), 0)) for s in CATALOGUE for k in KINDS}
    per_worker = prom.by('sum by (instance) (bw_section_events{window="24h"})', "instance")
    assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values()), per_worker
    # Each worker reports lag only for the partitions it owns: every partition once.
    partitions = prom.by("count by (partition) (bw_aggregator_input_lag_records)", "partition")
    assert len(partitions) == deployment.partitions and set(partitions.values()) == {1.0}
    # Each country's assessment comes from the one worker that owns it now.
    countries = len(CATALOGUE.countries())
    wait_until(
        lambda: (
            prom.value("count(bw_assessment_stage)") == countries
            and prom.value("max(count by (country) (bw_assessment_stage))") == 1
            and prom.value("count(bw_assessment_factor_level)") == 6 * countries
        ),
        60,
        "one assessment per country over both workers",
    )
    # Reports are analysed by the worker holding their partition: summed, each once.
    resp = httpx.post(http_services["ingest"].url + "/v1/reports", json=_reports(now), timeout=30)
    assert resp.status_code == 202, resp.text
    wait_until(
        lambda: prom.value("sum(bw_reports_analysed_total)") == 3,
        60,
        "three reports analysed over both workers",
    )
    # Each worker exports a zero for every country, severity and rule; summed, still 0.
    assert prom.value("max(count by (country, severity, rule) (bw_alerts_firing))") == 2
    assert prom.value("sum(bw_alerts_firing)") == 0

    # One worker stops: the survivor takes its sections and, once Prometheus has
    # seen the move, every section is counted once, with the same totals.
    workers[1].stop()
    try:
        wait_until(
            lambda: (
                prom.value("sum(bw_section_info)") == n
                and len(prom.by("count by (instance) (bw_section_info)", "instance")) == 1
            ),
            120,
            "the survivor owning every section",
        )
    except AssertionError as exc:  # seen in CI (session 6): keep what the survivor said
        raise AssertionError(f"{exc}\n--- survivor's log:\n{workers[0].log(400)}") from None
    wait_until(
        lambda: prom.value('sum(bw_section_events{window="24h"})') == total,
        30,
        "the survivor's counts equal to the posted counts",
    )
    assert prom.value("max(count by (section) (bw_section_info))") == 1
    wait_until(
        lambda: (
            prom.value("count(bw_assessment_stage)") == countries
            and prom.value("max(count by (country) (bw_assessment_stage))") == 1
        ),
        60,
        "the survivor assessing every country",
    )
    assert workers[0].process.poll() is None, workers[0].log()
