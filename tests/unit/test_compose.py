"""The docker-compose deployment and its Prometheus files, checked without Docker.

A mistake here shows up only when an operator runs ``docker compose up``: a
misspelt ``BW_`` variable is ignored by pydantic-settings (``extra="ignore"``),
a wrong port leaves a healthcheck failing forever, an alert on a metric that
does not exist never fires. So these tests read the files and compare them with
the settings classes and the metrics the code defines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.aggregator.settings import AggregatorSettings
from services.api.settings import UVICORN_FLAGS, ApiSettings
from services.common.settings import load_settings
from services.ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_FILES = [PROMETHEUS_DIR / n for n in ("alerts.yml", "recording.yml", "border-alerts.yml")]
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*test*.yml"))
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

# Which settings class reads a service's environment. `topics` runs the CLI,
# which reads the aggregator's settings (partition count) on top of the common ones.
SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "aggregator": AggregatorSettings,
    "ingest": IngestSettings,
    "api": ApiSettings,
    "topics": AggregatorSettings,
}
APP_SERVICES = ("aggregator", "ingest", "api")
ONE_SHOT_SERVICES = ("topics",)
Services = dict[str, dict[str, Any]]
# Where each service is scraped and probed; checked against the compose file below.
SERVICE_PORTS = {"ingest": 8081, "api": 8080, "aggregator": 6066}

_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def _resolve(value: object) -> str:
    """Compose interpolation with an empty host environment: defaults apply."""
    text = str(value).lower() if isinstance(value, bool) else str(value)

    def sub(match: re.Match[str]) -> str:
        op = match.group("op")
        if op in ("-", ":-"):
            return match.group("arg")
        if op in ("?", ":?"):
            raise AssertionError(f"${{{match.group('name')}}} has no default: {text!r}")
        return ""

    return _INTERPOLATION.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {p[0]: _resolve(p[1]) if len(p) == 2 else "" for p in pairs}
    return {str(k): "" if v is None else _resolve(v) for k, v in env.items()}


def _bw_names(cls: type[BaseSettings]) -> set[str]:
    return {"BW_" + name.upper() for name in cls.model_fields}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(t) for t in test)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> Services:
    assert isinstance(compose.get("services"), dict), "docker-compose.yml has no services"
    return compose["services"]


# --- compose: services and settings ------------------------------------------


def test_compose_has_the_borderwatch_services(services: Services) -> None:
    assert {"kafka", "topics", "aggregator", "ingest", "api"} <= services.keys()


def test_every_bw_variable_is_a_settings_field(services: Services) -> None:
    unknown: list[str] = []
    for name, service in services.items():
        bw_vars = {k for k in _environment(service) if k.startswith("BW_")}
        if not bw_vars:
            continue
        assert name in SETTINGS_OF, (
            f"service {name!r} sets BW_ variables but no settings class reads them"
        )
        valid = _bw_names(SETTINGS_OF[name])
        unknown += [f"{name}: {var}" for var in sorted(bw_vars - valid)]
    assert not unknown, (
        "BW_ variables that no settings field reads (ignored at start-up): " + ", ".join(unknown)
    )


@pytest.mark.parametrize("name", [*APP_SERVICES, *ONE_SHOT_SERVICES])
def test_environment_builds_valid_settings(
    name: str, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values, not just the names: the service would start with this environment."""
    for var in list(os.environ):
        if var.startswith("BW_"):
            monkeypatch.delenv(var)
    env = _environment(services[name])
    for var, value in env.items():
        if var.startswith("BW_"):
            monkeypatch.setenv(var, value)
    settings = load_settings(SETTINGS_OF[name])  # ConfigError names the bad variable
    assert settings.kafka_bootstrap == "kafka:9092"


def test_services_agree_on_topics(services: Services) -> None:
    prefixes = {n: _environment(services[n]).get("BW_TOPIC_PREFIX", "bw.") for n in SETTINGS_OF}
    assert len(set(prefixes.values())) == 1, f"topic prefixes differ: {prefixes}"
    partitions = {
        n: _environment(services[n]).get("BW_FIELD_PARTITIONS", "6")
        for n in ("topics", "aggregator")
    }
    assert len(set(partitions.values())) == 1, f"field partitions differ: {partitions}"


def test_operator_files_exist_in_the_image(services: Services) -> None:
    """BW_*_FILE paths under /app/ are the repository's files copied by deploy/Dockerfile."""
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M)
    assert re.search(r"^COPY deploy/config \./deploy/config$", dockerfile, re.M)
    for name in SETTINGS_OF:
        for var, value in _environment(services[name]).items():
            if var.endswith("_FILE") and value.startswith("/app/"):
                assert (ROOT / value.removeprefix("/app/")).is_file(), (
                    f"{name}: {var}={value} missing"
                )
    for name in APP_SERVICES:
        env = _environment(services[name])
        assert env.get("BW_SECTIONS_FILE", "").startswith("/app/deploy/config/"), name
    rules = _environment(services["aggregator"]).get("BW_RULES_FILE", "")
    assert rules.startswith("/app/deploy/config/")


def test_http_services_require_tokens_from_a_secret(
    compose: dict[str, Any], services: Services
) -> None:
    for name in ("ingest", "api"):
        env = _environment(services[name])
        assert env.get("BW_AUTH_ENABLED", "true").lower() in ("true", "1", "yes", "on"), name
        tokens_file = env.get("BW_TOKENS_FILE", "")
        assert tokens_file.startswith("/run/secrets/"), f"{name}: BW_TOKENS_FILE={tokens_file!r}"
        secret = tokens_file.removeprefix("/run/secrets/")
        mounted = [
            s if isinstance(s, str) else s.get("source") for s in services[name].get("secrets", [])
        ]
        assert secret in mounted, f"{name} does not mount secret {secret!r}"
        assert secret in (compose.get("secrets") or {}), f"secret {secret!r} is not declared"


# --- compose: build, start order, health --------------------------------------


def test_app_services_run_the_project_image(services: Services) -> None:
    for name in (*APP_SERVICES, *ONE_SHOT_SERVICES):
        build = services[name].get("build")
        assert isinstance(build, dict), f"{name} is not built from deploy/Dockerfile"
        assert (ROOT / build.get("context", ".") / build["dockerfile"]).resolve() == DOCKERFILE
    assert _command(services["topics"]) == ["borderwatch", "topics", "create"]
    assert _command(services["aggregator"]) == ["python", "-m", "services.aggregator"]
    for name, module in (("ingest", "services.ingest.app"), ("api", "services.api.app")):
        command = _command(services[name])
        assert command[:3] == ["uvicorn", f"{module}:create_app", "--factory"], command
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert int(command[command.index("--port") + 1]) == SERVICE_PORTS[name]
        # A feed's ?token= would be in an access log line, and in uvicorn's info lines.
        assert "--no-access-log" in command, command
        assert command[command.index("--log-level") + 1] == "warning", command
    # The API runs with the flags it was measured with.
    api = _command(services["api"])
    assert " ".join(UVICORN_FLAGS) in " ".join(api), api


def test_dockerfile_runs_slim_python_as_non_root() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and froms[-1] == "python:3.11-slim", froms
    # Dependencies from the runtime lock file with hashes, then the project with none of its own.
    assert re.search(
        r"^COPY requirements/runtime\.txt requirements/build\.txt \./requirements/$", text, re.M
    )
    for lock in ("runtime", "build"):
        assert re.search(
            rf"pip install --require-hashes --no-deps -r requirements/{lock}\.txt( \\)?$",
            text,
            re.M,
        ), lock
    assert re.search(r"^RUN pip install --no-deps --no-build-isolation \.$", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "the runtime image must not run as root"


def test_app_services_wait_for_healthy_kafka_and_topics(services: Services) -> None:
    for name in (*APP_SERVICES, *ONE_SHOT_SERVICES):
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on must use conditions"
        assert depends.get("kafka", {}).get("condition") == "service_healthy", name
    for name in APP_SERVICES:
        topics = services[name]["depends_on"].get("topics", {})
        assert topics.get("condition") == "service_completed_successfully", name
    assert str(services["topics"].get("restart", "no")) == "no", "a one-shot must not restart"


def test_every_service_has_a_healthcheck(services: Services) -> None:
    for name, service in services.items():
        health = service.get("healthcheck")
        assert isinstance(health, dict), f"{name} has no healthcheck"
        if name in ONE_SHOT_SERVICES:
            continue  # it exits; its exit code is what the others wait for
        assert not health.get("disable"), f"{name} disables its healthcheck"
        assert health.get("test"), f"{name}: healthcheck has no test"


def test_app_healthchecks_probe_readyz_on_the_served_port(services: Services) -> None:
    aggregator_env = _environment(services["aggregator"])
    # Faust binds BW_WEB_HOST; on 127.0.0.1 Prometheus could not reach the worker.
    assert aggregator_env.get("BW_WEB_HOST") == "0.0.0.0"
    default_port = AggregatorSettings.model_fields["web_port"].default
    web_port = int(aggregator_env.get("BW_WEB_PORT", default_port))
    assert web_port == SERVICE_PORTS["aggregator"]
    for name, port in SERVICE_PORTS.items():
        text = _healthcheck_text(services[name])
        assert re.search(rf"(127\.0\.0\.1|localhost):{port}/readyz", text), f"{name}: {text}"


def test_kafka_is_apache_kafka_39_in_kraft_mode(
    compose: dict[str, Any], services: Services
) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", kafka["image"]), kafka["image"]
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env.get("CLUSTER_ID"), "the image's default cluster id must not be relied on"
    for var in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env.get(var) == "1", f"{var} must be 1 on a single node"
    assert env.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS") == "0"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    # The other containers connect to what the broker advertises.
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "kafka-broker-api-versions.sh" in _healthcheck_text(kafka)
    # Data survives `docker compose down`: the log dir is a declared named volume.
    log_dir = env["KAFKA_LOG_DIRS"]
    mounts = [str(v).split(":") for v in kafka.get("volumes", [])]
    named = {m[0] for m in mounts if len(m) >= 2 and m[1] == log_dir}
    assert named & set(compose.get("volumes") or {}), f"{log_dir} is not on a named volume"


# --- Prometheus ---------------------------------------------------------------


# prometheus_client constructors, and the families custom collectors build at scrape time.
_METRIC_DEFINITION = re.compile(
    r"\b(?:Counter|Gauge|Histogram|Summary)(?:MetricFamily)?\(\s*\"(bw_[a-z0-9_]+)\""
)


def _defined_metrics() -> set[str]:
    """Metric names the code registers (prometheus_client constructors' first argument)."""
    names: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        names |= set(_METRIC_DEFINITION.findall(path.read_text(encoding="utf-8")))
    return names


def test_prometheus_scrapes_every_service_where_it_listens(services: Services) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == [f.name for f in RULE_FILES]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, port in SERVICE_PORTS.items():
        assert name in services
        job = jobs.get(name)
        assert job is not None, f"no scrape job for {name}"
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = {
            (host, sd["port"]) for sd in job.get("dns_sd_configs", []) for host in sd["names"]
        } | {
            (t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1]))
            for sc in job.get("static_configs", [])
            for t in sc["targets"]
        }
        assert (name, port) in targets, f"{name} job scrapes {targets}, expected {name}:{port}"
    # Each file where prometheus.yml (in /etc/prometheus) finds it.
    mounts = dict(str(v).split(":")[:2] for v in services["prometheus"]["volumes"])
    config_arg = next(c for c in _command(services["prometheus"]) if c.startswith("--config.file="))
    etc = Path(config_arg.split("=", 1)[1]).parent
    for path in (PROMETHEUS_CONFIG, *RULE_FILES):
        source = "./" + str(path.relative_to(ROOT))
        assert mounts.get(source) == str(etc / path.name), f"{source} is not mounted in {etc}"


RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _rules(*paths: Path) -> list[dict[str, Any]]:
    return [
        rule
        for path in paths
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ]


def _recorded() -> set[str]:
    return {r["record"] for r in _rules(*RULE_FILES) if "record" in r}


def test_recording_rules_follow_the_naming_convention_and_use_real_metrics() -> None:
    defined = _defined_metrics()
    recording = [r for r in _rules(*RULE_FILES) if "record" in r]
    assert len(recording) >= 5
    for rule in recording:
        # level:metric:operations (Prometheus's convention), over a metric we define.
        level, metric, ops = rule["record"].split(":")
        assert level and ops and metric.startswith("bw_"), rule["record"]
        used = {
            re.sub(r"_(bucket|sum|count)$", "", m) if m not in defined else m
            for m in re.findall(r"(?<![:\w])bw_[a-z0-9_]+", rule["expr"])
        }
        assert used <= defined, f"{rule['record']}: no such metric {sorted(used - defined)}"


def test_alert_rules_are_well_formed_and_use_real_metrics() -> None:
    rules = [r for r in _rules(*RULE_FILES) if "alert" in r]
    assert len(rules) >= 2
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    defined = _defined_metrics() | _recorded()
    assert "bw_ingest_events_accepted_total" in defined, "metric discovery found nothing"
    used: set[str] = set()
    for rule in rules:
        assert set(rule) <= RULE_KEYS, rule
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), f"{rule['alert']}: unbalanced parentheses"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"].get("summary"), f"{rule['alert']} has no summary"
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), rule["for"]
        # A histogram's series are its name plus _bucket, _sum or _count.
        metrics = {
            re.sub(r"_(bucket|sum|count)$", "", m) if m not in defined else m
            for m in re.findall(r"(?:\b[a-z_]+:)?bw_[a-z0-9_]+(?::[a-z0-9_]+)?", expr)
        }
        assert metrics <= defined, f"{rule['alert']}: no such metric {sorted(metrics - defined)}"
        used |= metrics
        if re.search(r"\bup\b", expr):
            used.add("up")
    assert "up" in used, "no rule notices a service that is down"
    assert {"bw_ingest_broker_unavailable_total", "bw_aggregator_events_counted_total"} <= used
    # The border itself: a quiet section, a rising level.
    assert {"section:bw_section_impact_level:max", "bw_section_sensor_types"} <= used


def _check_with(tool: str, package: str, *args: str) -> None:
    """Run a Debian tool's own check; skip (the structural checks ran) without it."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(
            f"{tool} not on PATH (Debian package `{package}`); the structural checks above ran instead"
        )
    result = subprocess.run([path, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{tool} {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_promtool_accepts_prometheus_files() -> None:
    _check_with("promtool", "prometheus", "check", "config", str(PROMETHEUS_CONFIG))
    _check_with("promtool", "prometheus", "check", "rules", *map(str, RULE_FILES))


def test_rule_unit_tests_cover_every_rule_file() -> None:
    assert {p.name for p in RULE_TESTS} >= {"border_test.yml", "health_test.yml"}
    covered = {
        (path.parent / f).resolve()
        for path in RULE_TESTS
        for f in yaml.safe_load(path.read_text(encoding="utf-8"))["rule_files"]
    }
    assert covered == {f.resolve() for f in RULE_FILES}
    tested = {
        t["alertname"]
        for path in RULE_TESTS
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
        for t in case.get("alert_rule_test", [])
    }
    new_alerts = {r["alert"] for r in _rules(PROMETHEUS_DIR / "border-alerts.yml")}
    assert new_alerts | {"AggregatorInputLagging", "PipelineSlow"} <= tested


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(path: Path) -> None:
    _check_with("promtool", "prometheus", "test", "rules", str(path))


# --- Alertmanager ----------------------------------------------------------------


def test_api_and_prometheus_send_to_the_compose_alertmanager(services: Services) -> None:
    am = services["alertmanager"]
    assert str(am["image"]).startswith("prom/alertmanager:v0.25"), am["image"]
    mounted = {str(v).split(":")[0]: str(v).split(":")[1] for v in am["volumes"]}
    config_arg = next(c for c in _command(am) if c.startswith("--config.file="))
    assert mounted["./deploy/alertmanager/alertmanager.yml"] == config_arg.split("=", 1)[1]
    assert "9093" in _healthcheck_text(am) and "/-/ready" in _healthcheck_text(am)
    url = _environment(services["api"]).get("BW_ALERTMANAGER_URL")
    assert url == "http://alertmanager:9093", url
    assert load_settings(ApiSettings, alertmanager_url=url).alertmanager_url == url
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    targets = [
        t
        for am_config in prometheus["alerting"]["alertmanagers"]
        for sc in am_config["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]


def test_alertmanager_routes_borderwatch_health_apart_from_section_alerts() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    receivers = {r["name"] for r in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers
    # One notification per section alert, whichever replica pushed it.
    assert {"alertname", "section"} <= set(route["group_by"])
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    system = prometheus["global"]["external_labels"]["system"]
    platform = [r for r in route["routes"] if f'system = "{system}"' in r["matchers"]]
    assert platform and platform[0]["receiver"] in receivers


def test_amtool_accepts_the_alertmanager_config() -> None:
    _check_with("amtool", "prometheus-alertmanager", "check-config", str(ALERTMANAGER_CONFIG))


# --- Grafana ----------------------------------------------------------------------

GRAFANA_DIR = ROOT / "deploy" / "grafana"


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Host path (relative to the repository) -> container path, for bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        parts = str(volume).split(":")
        if parts[0].startswith("./"):
            out[parts[0]] = parts[1]
    return out


def test_grafana_is_provisioned_from_the_repository(services: Services) -> None:
    grafana = services["grafana"]
    assert str(grafana["image"]).startswith("grafana/grafana-oss:"), grafana["image"]
    mounts = _mounts(grafana)
    for source in mounts:
        assert (ROOT / source).exists(), f"grafana mounts {source}, which does not exist"
    provisioning = "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/provisioning/datasources"] == f"{provisioning}/datasources"
    assert mounts["./deploy/grafana/provisioning/dashboards"] == f"{provisioning}/dashboards"
    # The file provider reads where the generated dashboards are mounted.
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "borderwatch.yml").read_text("utf-8")
    )["providers"]
    paths = {p["options"]["path"] for p in providers if p["type"] == "file"}
    assert paths == {mounts["./deploy/grafana/dashboards"]}
    assert sorted((GRAFANA_DIR / "dashboards").glob("*.json")), "no dashboard files"
    home = _environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    if home:
        assert home.startswith(mounts["./deploy/grafana/dashboards"] + "/")
        assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file(), home


def test_grafana_reaches_prometheus_where_it_listens(services: Services) -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text("utf-8")
    )["datasources"]
    prom = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prom) == 1 and prom[0].get("uid"), "one Prometheus datasource with a fixed uid"
    url = prom[0]["url"]
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url)
    assert match, url
    host, port = match.group(1), int(match.group(2))
    assert host in services, f"datasource host {host!r} is not a compose service"
    assert f"127.0.0.1:{port}/-/ready" in _healthcheck_text(services[host])
    assert services["grafana"]["depends_on"][host]["condition"] == "service_healthy"
    # Every dashboard query names that uid (the dashboards are generated with it).
    for path in (GRAFANA_DIR / "dashboards").glob("*.json"):
        uids = set(re.findall(r'"uid":\s*"([^"]+)"', path.read_text("utf-8"))) - {json_uid(path)}
        assert uids == {prom[0]["uid"]}, f"{path.name} uses datasources {uids}"


def json_uid(path: Path) -> str:
    return str(json.loads(path.read_text("utf-8"))["uid"])


def test_grafana_port_is_published_on_localhost_and_probed(services: Services) -> None:
    grafana = services["grafana"]
    assert "127.0.0.1:3000:3000" in [str(p) for p in grafana["ports"]]
    assert "127.0.0.1:3000/api/health" in _healthcheck_text(grafana)
    assert "grafana-data" in (yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))["volumes"] or {})
