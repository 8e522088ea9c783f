"""Every client through a SASL-protected Kafka: the same Kafka 3.9 jars as the
embedded broker, with a SASL_PLAINTEXT listener taking PLAIN and SCRAM-SHA-512
(the SCRAM user is written at storage format time, as KRaft allows).

Events go HTTP -> ingest (aiokafka) -> Kafka -> aggregator worker (Faust) ->
Kafka -> API (aiokafka), every hop authenticated; a wrong password is refused.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app as create_api
from services.api.settings import ApiSettings
from services.common.kafka import ensure_topics, wait_for_broker
from services.common.settings import CommonSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.runtime.broker import BrokerError, EmbeddedKafka, install
from tests.integration.conftest import Deployment, Worker, event, wait_until

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pw-5e1d"
PLAIN_PASSWORD = "bw-plain-pw-71c2"
SCRAM_PASSWORD = "bw-scram-pw-0a9f"


class SaslKafka(EmbeddedKafka):
    """The embedded broker with its client listener behind SASL (PLAIN, SCRAM-SHA-512)."""

    def _properties(self) -> Path:
        path = super()._properties()
        props = dict(
            line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line
        )
        listener = f"SASL_PLAINTEXT://{self.host}:{self.port}"
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="admin" password="{ADMIN_PASSWORD}" '
            f'user_admin="{ADMIN_PASSWORD}" user_borderwatch="{PLAIN_PASSWORD}";'
        )
        scram_jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{ADMIN_PASSWORD}";'
        )
        props |= {
            "listeners": f"{listener},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": listener,
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram_jaas,
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
        return path

    def start(self) -> subprocess.Popen[bytes]:
        # Format first, with the SCRAM users; start() then finds the storage formatted.
        libs = install(self.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.choose_ports()
        props = self._properties()
        fmt = subprocess.run(
            self._java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id=Zk3yQ1bXSxC8cM3m2H6Qbw",
                "-c",
                str(props),
                "--add-scram",
                f"SCRAM-SHA-512=[name=borderwatch,password={SCRAM_PASSWORD}]",
                "--add-scram",
                f"SCRAM-SHA-512=[name=admin,password={ADMIN_PASSWORD}]",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting failed:\n{fmt.stdout}{fmt.stderr}")
        return super().start()

    def wait_sasl_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.port and _listening(self), timeout, "the SASL broker listening")
        asyncio.run(wait_for_broker(_security("PLAIN", PLAIN_PASSWORD, self.bootstrap), timeout))


def _listening(kafka: EmbeddedKafka) -> bool:
    import socket

    if kafka.process is not None and kafka.process.poll() is not None:
        raise AssertionError(f"the SASL broker exited:\n{kafka.log_path.read_text()[-3000:]}")
    try:
        with socket.create_connection((kafka.host, kafka.port), timeout=0.5):
            return True
    except OSError:
        return False


def _env(mechanism: str, password: str) -> dict[str, str]:
    return {
        "BW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "BW_KAFKA_SASL_MECHANISM": mechanism,
        "BW_KAFKA_SASL_USERNAME": "borderwatch",
        "BW_KAFKA_SASL_PASSWORD": password,
    }


def _security(mechanism: str, password: str, bootstrap: str, **more: Any) -> Any:
    cls = more.pop("cls", CommonSettings)
    return cls(
        kafka_bootstrap=bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="borderwatch",
        kafka_sasl_password=password,
        **more,
    )


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslKafka]:
    kafka = SaslKafka(tmp_path_factory.mktemp("sasl-kafka"), heap="384m")
    kafka.start()
    try:
        kafka.wait_sasl_ready()
        yield kafka
    finally:
        kafka.stop()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_wrong_password_is_refused(
    sasl_kafka: SaslKafka, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = _security(mechanism, "not-the-password", sasl_kafka.bootstrap)
    with pytest.raises(TimeoutError) as err:
        asyncio.run(wait_for_broker(wrong, timeout=4))
    # The broker's refusal, as aiokafka logs it; the password itself in no message.
    assert "SaslAuthenticationFailed" in caplog.text, caplog.text[-2000:]
    assert "not-the-password" not in str(err.value) + caplog.text


@pytest.mark.parametrize(
    ("mechanism", "password"), [("PLAIN", PLAIN_PASSWORD), ("SCRAM-SHA-512", SCRAM_PASSWORD)]
)
def test_events_flow_through_every_service_over_sasl(
    sasl_kafka: SaslKafka, tmp_path: Path, mechanism: str, password: str
) -> None:
    tag = mechanism.lower().replace("-", "")
    dep = Deployment(sasl_kafka.bootstrap, prefix=f"sasl{tag}.", app_id=f"agg-sasl-{tag}")
    security = {
        "kafka_bootstrap": dep.bootstrap,
        "topic_prefix": dep.prefix,
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": "borderwatch",
        "kafka_sasl_password": password,
    }
    asyncio.run(ensure_topics(CommonSettings(**security), dep.partitions))  # type: ignore[arg-type]
    # The Faust worker, as a real process with the settings in its environment.
    worker = Worker(dep, tmp_path, _env(mechanism, password))
    try:
        worker.wait_ready(90)
        ingest_settings = IngestSettings(auth_enabled=False, **security)  # type: ignore[arg-type]
        api_settings = ApiSettings(auth_enabled=False, **security)  # type: ignore[arg-type]
        with (
            TestClient(create_ingest(ingest_settings)) as ingest,
            TestClient(create_api(api_settings)) as api,
        ):
            wait_until(lambda: ingest.get("/readyz").status_code == 200, 30, "ingest ready")
            wait_until(lambda: api.get("/readyz").status_code == 200, 30, "API ready")
            events = [event("LV-KRA", "crossing_attempt", 4, datetime.now(UTC)) for _ in range(5)]
            resp = ingest.post("/v1/field-events", json=events)
            assert resp.status_code == 202, resp.text

            def counted() -> bool:
                section = api.get("/api/v1/sections/LV-KRA").json()
                return bool(section["counts_24h"]["crossing_attempt"] == 20)

            wait_until(counted, 30, "the events counted and in the API's view")
    finally:
        worker.stop()
    log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert password not in log
