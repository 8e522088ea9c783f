"""The Helm chart (deploy/helm/borderwatch), checked without a cluster.

``helm lint`` and ``helm template`` run for real (helm is built by
``scripts/install-helm.sh``, which ``make test`` runs through ``make helm``), with the default
values and with ``ci/production-values.yaml`` (external Kafka over SASL_SSL,
https Alertmanager with basic auth, existing Secrets). Every rendered object is
validated offline against the Kubernetes OpenAPI schemas shipped by
``kubernetes-validate`` (strict: an unknown field fails; a kind it has no
schema for fails too, where the tool would only warn). Then, as
tests/unit/test_compose.py does for compose, the rendered objects are compared
with the code: every BW_ variable is a settings field and the values build
valid settings (files read from the ConfigMap and Secrets they are mounted
from), ports and probe paths are those the services serve, and the security
context, resources, autoscaler, disruption budget and network policies fit.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.aggregator.rules import load_rules
from services.aggregator.settings import AggregatorSettings
from services.api.settings import UVICORN_FLAGS, ApiSettings
from services.common.auth import list_tokens
from services.common.catalogue import Catalogue
from services.common.settings import load_settings
from services.ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "borderwatch"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
HELM = ROOT / ".tools" / "bin" / "helm"
# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) that the schemas
# cover well, and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")

SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "aggregator": AggregatorSettings,
    "ingest": IngestSettings,
    "api": ApiSettings,
    "topics": AggregatorSettings,  # `borderwatch topics create` reads these
}
# Where each service listens (as in tests/unit/test_compose.py).
SERVICE_PORTS = {"ingest": 8081, "api": 8080, "aggregator": 6066}
VALUE_SETS = {"default": [], "production": ["-f", str(PRODUCTION_VALUES)]}

Objects = list[dict[str, Any]]


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        message = (
            "helm is not built: `make helm` (scripts/install-helm.sh) builds it; `make test` does"
        )
        if os.environ.get("CI"):
            pytest.fail(message + "; CI runs make test, whose install must have built it")
        pytest.skip(message)
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _render(*args: str) -> Objects:
    done = _helm("template", "bw", str(CHART), "--namespace", "border", *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> Objects:
    return _render(*VALUE_SETS[request.param])


@pytest.fixture(scope="module")
def production() -> Objects:
    return _render(*VALUE_SETS["production"])


def _of(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _workloads(objects: Objects) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(component, pod spec, its one container) of every Deployment and Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            pod = obj["spec"]["template"]["spec"]
            [container] = pod["containers"]
            yield component, pod, container


def _deployment(objects: Objects, component: str) -> dict[str, Any]:
    [dep] = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return dep


def _container(objects: Objects, component: str) -> dict[str, Any]:
    [container] = _deployment(objects, component)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- helm itself, and the Kubernetes schemas ------------------------------------


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_helm_lint_passes_strictly(values: str) -> None:
    done = _helm("lint", "--strict", str(CHART), *VALUE_SETS[values])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_a_valid_kubernetes_object(
    rendered: Objects, version: str
) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Job",
    } <= kinds, kinds
    problems = []
    for obj in rendered:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            # Strict: unknown fields fail. A missing schema raises too (the CLI only warns).
            kubernetes_validate.validate(obj, version, strict=True)
        except Exception as exc:  # ValidationError, SchemaNotFoundError, ...
            problems.append(f"{name}: {type(exc).__name__}: {getattr(exc, 'message', exc)}")
    assert not problems, "\n".join(problems)


def test_the_validator_does_reject_a_wrong_object(rendered: Objects) -> None:
    """The check above can fail: an unknown field and a wrong type are refused."""
    dep = _deployment(rendered, "api")
    broken = yaml.safe_load(yaml.safe_dump(dep))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    broken = yaml.safe_load(yaml.safe_dump(dep))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "kafka.bootstrap="], "kafka.bootstrap: required"),
        (["--set", "kafka.securityProtocol=TLS"], 'kafka.securityProtocol: "TLS" is not'),
        (
            ["--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.sasl.password=x"],
            "kafka.sasl.username: required with kafka.securityProtocol=SASL_SSL",
        ),
        (
            ["--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.sasl.username=bw"],
            "kafka.sasl.existingSecret or kafka.sasl.password: required",
        ),
        (
            ["--set", "kafka.sasl.username=bw"],
            "kafka.sasl.*: set, but kafka.securityProtocol=PLAINTEXT does not use SASL",
        ),
        (
            ["--set", "kafka.tls.caSecret=ca"],
            "kafka.tls.*: set, but kafka.securityProtocol=PLAINTEXT does not use TLS",
        ),
        (
            ["--set", "api.alertmanager.username=bw", "--set", "api.alertmanager.password=x"],
            "credentials or a CA are set but api.alertmanager.url is not",
        ),
        (
            [
                "--set",
                "api.alertmanager.url=http://am:9093",
                "--set",
                "api.alertmanager.caSecret=c",
            ],
            'api.alertmanager.caSecret: needs an https:// api.alertmanager.url, got "http://am:9093"',
        ),
        (
            [
                "--set",
                "api.alertmanager.url=http://am:9093",
                "--set",
                "api.alertmanager.username=bw",
            ],
            "api.alertmanager.username: needs api.alertmanager.password",
        ),
    ],
)
def test_bad_values_fail_the_render_naming_the_value(args: list[str], message: str) -> None:
    done = _helm("template", "bw", str(CHART), *args)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


# --- environment and files against the settings ------------------------------------


def _files(objects: Objects, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """Mounted path -> what is there: the ConfigMap's text, a Secret key (rendered
    text, or the name of an existing Secret), or "emptyDir"."""
    configmaps = {n: o["data"] for n, o in _of(objects, "ConfigMap").items()}
    secrets = {n: o.get("stringData", {}) for n, o in _of(objects, "Secret").items()}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out: dict[str, Any] = {}
    for mount in container.get("volumeMounts", []):
        assert "subPath" not in mount, f"{mount}: a subPath mount never sees updates"
        volume = volumes[mount["name"]]
        base = mount["mountPath"]
        if "emptyDir" in volume:
            out[base] = "emptyDir"
        elif "configMap" in volume:
            data = configmaps[volume["configMap"]["name"]]
            for key, text in data.items():
                out[f"{base}/{key}"] = text
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            items = volume["secret"].get("items")
            if items is None:  # a kubernetes.io/tls Secret: all of its keys
                items = [{"key": k, "path": k} for k in ("tls.crt", "tls.key", "ca.crt")]
            for item in items:
                if name in secrets:
                    assert item["key"] in secrets[name], f"secret {name} has no {item['key']}"
                    out[f"{base}/{item['path']}"] = secrets[name][item["key"]]
                else:
                    out[f"{base}/{item['path']}"] = f"(existing secret {name})"
    return out


def _secret_ref(objects: Objects, ref: dict[str, str], production: bool) -> str:
    secrets = _of(objects, "Secret")
    if ref["name"] in secrets:
        data = secrets[ref["name"]].get("stringData", {})
        assert ref["key"] in data, f"secret {ref['name']} has no key {ref['key']}"
        return str(data[ref["key"]] or "from-the-secret")
    # Not made by the chart: only the existing Secrets the values name.
    assert production, f"the default values refer to a secret the chart does not make: {ref}"
    return "from-an-existing-secret"


def test_every_bw_variable_is_a_settings_field(rendered: Objects) -> None:
    unknown = []
    for component, _, container in _workloads(rendered):
        fields = {"BW_" + f.upper() for f in SETTINGS_OF[component].model_fields}
        names = {n for n in _env(container) if n.startswith("BW_")}
        assert names, f"{component} sets no BW_ variable"
        unknown += [f"{component}: {n}" for n in sorted(names - fields)]
        assert not set(_env(container)) - names, "only BW_ variables (Faust reads some others)"
    assert not unknown, "BW_ variables no settings field reads (ignored at start-up): " + str(
        unknown
    )


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_the_environment_builds_valid_settings_with_the_mounted_files(
    values: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each container would start with: values, secrets, and files where they
    are mounted (the operator data are parsed from the ConfigMap)."""
    objects = _render(*VALUE_SETS[values])
    for component, pod, container in _workloads(objects):
        for var in list(os.environ):
            if var.startswith("BW_"):
                monkeypatch.delenv(var)
        files = _files(objects, pod, container)
        for name, entry in _env(container).items():
            if "valueFrom" in entry:
                value = _secret_ref(
                    objects, entry["valueFrom"]["secretKeyRef"], values != "default"
                )
            else:
                value = str(entry["value"])
            if name.endswith("FILE") or name == "BW_DATA_DIR":
                source = files.get(value) or next(
                    (files[m] for m in files if value.startswith(m + "/")), None
                )
                assert source is not None, f"{component}: {name}={value} is on no volume"
                if source != "emptyDir":
                    local = tmp_path / component / value.lstrip("/")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    local.write_text(source, encoding="utf-8")
                    value = str(local)
            monkeypatch.setenv(name, value)
        settings = load_settings(SETTINGS_OF[component])  # ConfigError names the variable
        if values == "default":
            assert settings.kafka_bootstrap == "kafka:9092"
        # The operator data the chart ships parse as the services parse them.
        assert len(Catalogue.load(settings.sections_file)) > 5
        if isinstance(settings, AggregatorSettings) and component == "aggregator":
            assert load_rules(settings.rules_file)
        if component in ("ingest", "api") and values == "default":
            # The chart's tokens file is one the services read (no tokens yet: NOTES say so).
            assert list_tokens(settings.tokens_file) == []  # type: ignore[attr-defined]


def test_external_kafka_over_sasl_ssl_reaches_every_workload(production: Objects) -> None:
    for component, pod, container in _workloads(production):
        env = _env(container)
        assert env["BW_KAFKA_BOOTSTRAP"]["value"].count(":9096") == 3, component
        assert env["BW_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        assert env["BW_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        # The password only ever by reference.
        ref = env["BW_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "borderwatch-kafka", "key": "password"}, component
        files = _files(production, pod, container)
        assert (
            files[env["BW_KAFKA_SSL_CAFILE"]["value"]] == "(existing secret borderwatch-kafka-ca)"
        )
        assert env["BW_KAFKA_SSL_CERTFILE"]["value"] in files
        assert env["BW_KAFKA_SSL_KEYFILE"]["value"] in files


def test_services_agree_on_topics_and_partitions(rendered: Objects) -> None:
    seen = {
        component: (
            _env(c)["BW_TOPIC_PREFIX"]["value"],
            _env(c)["BW_KAFKA_BOOTSTRAP"]["value"],
        )
        for component, _, c in _workloads(rendered)
    }
    assert set(seen) == {"aggregator", "ingest", "api", "topics"}
    assert len(set(seen.values())) == 1, seen
    partitions = {
        component: _env(c)["BW_FIELD_PARTITIONS"]["value"]
        for component, _, c in _workloads(rendered)
        if component in ("aggregator", "topics")
    }
    assert len(set(partitions.values())) == 1, partitions


def _secret_fields(cls: type[BaseSettings]) -> set[str]:
    return {
        "BW_" + name.upper()
        for name, field in cls.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }


def test_no_secret_is_in_a_plain_value(production: Objects) -> None:
    assert "BW_ALERTMANAGER_PASSWORD" in _secret_fields(ApiSettings)
    checked = set()
    for component, _, container in _workloads(production):
        for name, entry in _env(container).items():
            if name in _secret_fields(SETTINGS_OF[component]):
                assert "valueFrom" in entry, f"{component}: {name} in clear in the pod spec"
                checked.add(name)
    assert checked == {"BW_KAFKA_SASL_PASSWORD", "BW_ALERTMANAGER_PASSWORD"}
    assert not _of(production, "Secret"), "everything comes from existing secrets here"


def test_the_chart_ships_the_repository_operator_data() -> None:
    for name in ("sections.yaml", "rules.yaml"):
        chart = (CHART / "files" / name).read_text(encoding="utf-8")
        repo = (ROOT / "deploy" / "config" / name).read_text(encoding="utf-8")
        assert chart == repo, f"deploy/helm/borderwatch/files/{name} differs from deploy/config"


def test_tokens_come_from_a_secret_mounted_so_that_revocations_reach_the_pods(
    rendered: Objects,
) -> None:
    for component in ("ingest", "api"):
        dep = _deployment(rendered, component)
        pod = dep["spec"]["template"]["spec"]
        container = _container(rendered, component)
        path = _env(container)["BW_TOKENS_FILE"]["value"]
        assert _env(container)["BW_AUTH_ENABLED"]["value"] == "true"
        mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert "secret" in volume, f"{component}: tokens not from a Secret"
        assert "subPath" not in mount  # a subPath mount would never see a revoke
        # Token changes must not restart the pods (they reload the file); config changes do.
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert set(a for a in annotations if a.startswith("checksum/")) == {"checksum/config"}


# --- ports and probes against the code ------------------------------------------------


def _served_paths(component: str) -> set[str]:
    if component == "aggregator":
        source = (ROOT / "services" / "aggregator" / "agents.py").read_text("utf-8")
        return set(re.findall(r'@app\.page\("([^"]+)"\)', source))
    from services.api.app import create_app as create_api
    from services.ingest.app import create_app as create_ingest

    app = create_ingest() if component == "ingest" else create_api()
    return {route.path for route in app.routes if hasattr(route, "path")}


def _port(container: dict[str, Any], ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == ref]
    return int(port)


@pytest.mark.parametrize("component", sorted(SERVICE_PORTS))
def test_probes_and_ports_are_where_the_service_serves_them(
    component: str, rendered: Objects
) -> None:
    container = _container(rendered, component)
    port = SERVICE_PORTS[component]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    command = container["command"]
    if component == "aggregator":
        assert command == ["python", "-m", "services.aggregator"]
        env = _env(container)
        # Faust binds BW_WEB_HOST; on 127.0.0.1 neither kubelet nor Prometheus would reach it.
        assert env["BW_WEB_HOST"]["value"] == "0.0.0.0"
        assert int(env["BW_WEB_PORT"]["value"]) == port
    else:
        module = f"services.{component}.app:create_app"
        assert command[:3] == ["uvicorn", module, "--factory"], command
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert int(command[command.index("--port") + 1]) == port
        assert "--no-access-log" in command
        assert command[command.index("--log-level") + 1] == "warning"
        if component == "api":
            assert " ".join(UVICORN_FLAGS) in " ".join(command)
        settings_port = SETTINGS_OF[component].model_fields["port"].default
        assert settings_port == port
    served = _served_paths(component)
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for kind, probe in probes.items():
        assert probe["path"] in served, f"{component} {kind}: {probe['path']} not served"
        assert _port(container, probe["port"]) == port, f"{component} {kind} port"
    # The Service sends traffic (and Prometheus) to the same port.
    name = _deployment(rendered, component)["metadata"]["name"]
    service = _of(rendered, "Service")[name]
    [service_port] = service["spec"]["ports"]
    assert _port(container, service_port["targetPort"]) == port
    selector = _deployment(rendered, component)["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    annotations = _deployment(rendered, component)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert "/metrics" in served


# --- security, resources, scaling -----------------------------------------------------


def _dockerfile_uid() -> int:
    text = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"useradd .*--uid (\d+)", text)
    assert match, "no fixed uid in deploy/Dockerfile"
    return int(match.group(1))


def test_every_pod_runs_as_the_image_user_with_a_read_only_root(rendered: Objects) -> None:
    uid = _dockerfile_uid()
    for component, pod, container in _workloads(rendered):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == uid and security["runAsGroup"] == uid
        assert security["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        own = container["securityContext"]
        assert own["readOnlyRootFilesystem"] is True, component
        assert own["allowPrivilegeEscalation"] is False
        assert own["capabilities"]["drop"] == ["ALL"]
        # What the services write goes to emptyDirs: /tmp, and the aggregator's data dir.
        files = _files(rendered, pod, container)
        assert files.get("/tmp") == "emptyDir", component
        if component == "aggregator":
            data_dir = _env(container)["BW_DATA_DIR"]["value"]
            assert any(data_dir.startswith(m + "/") and files[m] == "emptyDir" for m in files), (
                data_dir
            )


def test_every_container_has_requests_and_a_memory_limit(rendered: Objects) -> None:
    for component, _, container in _workloads(rendered):
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), component
        assert "memory" in resources["limits"], component


def test_ingest_and_api_scale_on_cpu_and_the_aggregator_has_a_disruption_budget(
    rendered: Objects,
) -> None:
    hpas = _of(rendered, "HorizontalPodAutoscaler")
    deployments = _of(rendered, "Deployment")
    scaled = set()
    for hpa in hpas.values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        # The autoscaler owns the count: a replicas field would fight it on each upgrade.
        assert "replicas" not in deployments[target["name"]]["spec"]
        scaled.add(deployments[target["name"]]["metadata"]["labels"]["app.kubernetes.io/component"])
    assert "api" in scaled
    assert scaled <= {"ingest", "api"}
    for name, dep in deployments.items():
        if name not in {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}:
            assert dep["spec"]["replicas"] >= 2, name
    aggregator = _deployment(rendered, "aggregator")
    grace = aggregator["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # Leaving the group takes a commit and a LeaveGroup; well under this.
    assert grace >= 30
    selectors = [
        p["spec"]["selector"]["matchLabels"] for p in _of(rendered, "PodDisruptionBudget").values()
    ]
    assert aggregator["spec"]["selector"]["matchLabels"] in selectors
    assert aggregator["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


# --- network policies -------------------------------------------------------------------


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def _allowed_ports(rules: list[dict[str, Any]], container: dict[str, Any]) -> set[int]:
    return {_port(container, p["port"]) for rule in rules for p in rule.get("ports", [])}


def test_network_policies_deny_by_default_and_open_only_what_is_used(rendered: Objects) -> None:
    policies = list(_of(rendered, "NetworkPolicy").values())
    for component in SERVICE_PORTS:
        dep = _deployment(rendered, component)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        container = _container(rendered, component)
        mine = [p for p in policies if _selects(p, labels)]
        deny = [p for p in mine if not p["spec"].get("ingress") and not p["spec"].get("egress")]
        assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}, component
        ingress = [r for p in mine for r in p["spec"].get("ingress", [])]
        assert _allowed_ports(ingress, container) == {SERVICE_PORTS[component]}, component
        egress = [r for p in mine for r in p["spec"].get("egress", [])]
        ports = {p["port"] for r in egress for p in r.get("ports", [])}
        assert 53 in ports, f"{component}: no DNS"
        env = _env(container)
        for server in env["BW_KAFKA_BOOTSTRAP"]["value"].split(","):
            assert int(server.rsplit(":", 1)[1]) in ports, f"{component}: Kafka {server} blocked"
        url = env.get("BW_ALERTMANAGER_URL", {}).get("value")
        if url:
            assert (urlsplit(url).port or 443) in ports, f"api: Alertmanager {url} blocked"
    aggregator = _deployment(rendered, "aggregator")["spec"]["template"]["metadata"]["labels"]
    for policy in policies:
        if _selects(policy, aggregator):
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), "the aggregator is open to anyone, not only Prometheus"


def test_production_values_narrow_who_may_connect(production: Objects) -> None:
    policies = _of(production, "NetworkPolicy")
    api = next(p for n, p in policies.items() if n.endswith("-api"))
    [rule] = api["spec"]["ingress"]
    namespaces = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
    ]
    assert namespaces == ["ingress-nginx", "monitoring"]
    kafka = next(p for n, p in policies.items() if n.endswith("-egress-kafka"))
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in kafka["spec"]["egress"][1]["to"]
