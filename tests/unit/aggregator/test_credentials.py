"""Kafka SASL/TLS settings reach every client the same way: aiokafka's (ingest,
API, CLI) through ``client_options`` and Faust's (aggregator) through
``broker_credentials``. A half-given or unused security setting stops start-up."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from services.aggregator.credentials import broker_credentials
from services.common.errors import ConfigError
from services.common.kafka import client_options
from services.common.settings import CommonSettings, load_settings
from services.runtime.tls import LocalTls, ensure_local_tls

PASSWORD = "kafka-pw-9f2c"


@pytest.fixture
def pki(tmp_path: Path) -> LocalTls:
    return ensure_local_tls(tmp_path)


def _settings(**values: Any) -> CommonSettings:
    return load_settings(CommonSettings, kafka_bootstrap="kafka-0.example:9093", **values)


def _auth(options: dict[str, Any]) -> dict[str, Any]:
    """What decides the connection's security, comparable across the two clients."""
    out = {k: v for k, v in options.items() if k != "bootstrap_servers" and v is not None}
    context = out.pop("ssl_context", None)
    if context is not None:
        out["ca"] = sorted(str(c["subject"]) for c in context.get_ca_certs())
        out["verify"] = (context.verify_mode, context.check_hostname)
    return out


@pytest.mark.parametrize(
    "security",
    [
        {},
        {"kafka_security_protocol": "SSL"},
        {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-256"},
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512"},
        {"kafka_security_protocol": "SASL_SSL"},  # PLAIN by default
    ],
    ids=["plaintext", "ssl", "sasl-plaintext-scram256", "sasl-ssl-scram512", "sasl-ssl-plain"],
)
async def test_aiokafka_and_faust_clients_get_the_same_security(
    security: dict[str, str], pki: LocalTls
) -> None:
    values: dict[str, Any] = dict(security)
    protocol = values.get("kafka_security_protocol", "PLAINTEXT")
    if protocol.startswith("SASL_"):
        values |= {"kafka_sasl_username": "borderwatch", "kafka_sasl_password": PASSWORD}
    if protocol in ("SSL", "SASL_SSL"):
        values["kafka_ssl_cafile"] = str(pki.ca)
    settings = _settings(**values)

    ours = client_options(settings)
    faust_side = credentials_to_aiokafka_auth(broker_credentials(settings))

    assert ours["bootstrap_servers"] == "kafka-0.example:9093"
    assert _auth(ours) == _auth(dict(faust_side))
    assert ours["security_protocol"] == protocol
    if protocol.startswith("SASL_"):
        assert ours["sasl_mechanism"] == values.get("kafka_sasl_mechanism", "PLAIN")
        assert (ours["sasl_plain_username"], ours["sasl_plain_password"]) == (
            "borderwatch",
            PASSWORD,
        )
    else:
        assert "sasl_mechanism" not in ours
    if protocol in ("SSL", "SASL_SSL"):
        context = ours["ssl_context"]
        # The brokers are verified against the given CA, host names included.
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert _auth(ours)["ca"] == [str(c["subject"]) for c in context.get_ca_certs()]
        assert any("borderwatch" in str(c["subject"]) for c in context.get_ca_certs())
    else:
        assert "ssl_context" not in ours
    # aiokafka itself accepts the combination (it checks it when the client is made).
    AIOKafkaProducer(**ours)
    AIOKafkaConsumer("t", **ours)
    # The password is no part of what a log line of the settings or credentials shows.
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(broker_credentials(settings))


def test_a_client_certificate_is_presented_for_mutual_tls(pki: LocalTls, tmp_path: Path) -> None:
    settings = _settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(pki.ca),
        kafka_ssl_certfile=str(pki.cert),
        kafka_ssl_keyfile=str(pki.key),
    )
    assert client_options(settings)["ssl_context"] is not None
    # The key must belong to the certificate: a wrong one fails at start, not at connect.
    other = ensure_local_tls(tmp_path / "other")
    wrong = _settings(
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=str(pki.cert),
        kafka_ssl_keyfile=str(other.key),
    )
    with pytest.raises(ssl.SSLError):
        client_options(wrong)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": PASSWORD},
            "BW_KAFKA_SASL_USERNAME: needed with BW_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "bw"},
            "BW_KAFKA_SASL_PASSWORD: needed with BW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        ),
        (
            {"kafka_sasl_username": "bw", "kafka_sasl_password": PASSWORD},
            "BW_KAFKA_SASL_USERNAME is set but BW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not "
            "use it (set SASL_PLAINTEXT or SASL_SSL)",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_cafile": "ca.pem"}
            | {"kafka_sasl_username": "bw", "kafka_sasl_password": PASSWORD},
            "BW_KAFKA_SSL_CAFILE is set but BW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
            "BW_KAFKA_SSL_CAFILE: no such file /nonexistent/ca.pem",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/nonexistent/c.pem"},
            "BW_KAFKA_SSL_CERTFILE and BW_KAFKA_SSL_KEYFILE: give both or neither",
        ),
        (
            {"kafka_security_protocol": "TLS"},
            "BW_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' "
            "or 'SASL_SSL'",
        ),
    ],
)
def test_bad_kafka_security_settings_stop_start_up_naming_the_variable(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        _settings(**values)
    assert PASSWORD not in str(err.value)


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """An optional Kubernetes secret key that is absent arrives as an empty variable."""
    for name in ("SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "SSL_CAFILE"):
        monkeypatch.setenv(f"BW_KAFKA_{name}", "")
    settings = _settings()
    assert settings.kafka_sasl_password is None and settings.kafka_ssl_cafile is None
