"""Settings shared by every borderwatch service.

Each service has one frozen pydantic-settings class with the ``BW_`` prefix;
they all inherit :class:`CommonSettings`, so the Kafka connection, topic names
and operator files are configured in one place. Settings are read only at entry
points (``create_app()``, the Faust app module, the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "deploy" / "config"


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "borderwatch"


class CommonSettings(BaseSettings):
    """Kafka connection, topic naming and operator data files."""

    model_config = SettingsConfigDict(env_prefix="BW_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers, comma separated (host:port,...).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every client talks to Kafka (aiokafka and Faust alike)."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_* protocols; unset = PLAIN)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (SASL_* protocols).")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (SASL_* protocols)."
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA bundle (PEM) for the brokers' certificates; unset = system CAs."
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="Client certificate (PEM) for brokers that require mutual TLS."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="Private key (PEM) of kafka_ssl_certfile."
    )
    topic_prefix: str = Field(
        "bw.",
        pattern=r"^[A-Za-z0-9._-]{0,100}$",
        description="Prefix of every topic name (tests use a fresh one per test).",
    )
    topic_replication_factor: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Copies of each topic's partitions (ours and Faust's changelogs); "
        "default by cluster size: 3 with 3 or more brokers, else one per broker.",
    )
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Copies that must have a record before acks=all acknowledges it; "
        "default: 2 with a replication factor of 3 or more, else 1.",
    )
    sections_file: Path = Field(
        DEFAULT_CONFIG_DIR / "sections.yaml", description="Section catalogue (YAML)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value

    @field_validator(
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _kafka_empty_is_unset(cls, value: object) -> object:
        # An optional Kubernetes secret key that is absent arrives as "".
        return None if value == "" else value

    @model_validator(mode="after")
    def _kafka_security(self) -> CommonSettings:
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        p = "BW_KAFKA_"
        if sasl:
            for name in ("sasl_username", "sasl_password"):
                if getattr(self, f"kafka_{name}") is None:
                    raise ValueError(
                        f"{p}{name.upper()}: needed with {p}SECURITY_PROTOCOL={protocol}"
                    )
        for name, needs, what in (
            ("sasl_mechanism", sasl, "SASL_PLAINTEXT or SASL_SSL"),
            ("sasl_username", sasl, "SASL_PLAINTEXT or SASL_SSL"),
            ("sasl_password", sasl, "SASL_PLAINTEXT or SASL_SSL"),
            ("ssl_cafile", tls, "SSL or SASL_SSL"),
            ("ssl_certfile", tls, "SSL or SASL_SSL"),
            ("ssl_keyfile", tls, "SSL or SASL_SSL"),
        ):
            if getattr(self, f"kafka_{name}") is not None and not needs:
                # Silently ignored, it would send in clear what was meant to be protected.
                raise ValueError(
                    f"{p}{name.upper()} is set but {p}SECURITY_PROTOCOL={protocol} does not "
                    f"use it (set {what})"
                )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError(f"{p}SSL_CERTFILE and {p}SSL_KEYFILE: give both or neither")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, f"kafka_{name}")
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{p}{name.upper()}: no such file {path}")
        return self


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build a settings object, turning a validation error into a clear ConfigError.

    The message names each environment variable and what is wrong with it.
    """
    try:
        return cls(**overrides)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            # A check across fields (loc is empty) names its variables in the message.
            problems.append(f"{prefix}{field.upper()}: {err['msg']}" if field else err["msg"])
        raise ConfigError(f"invalid {cls.__name__}: " + "; ".join(problems)) from exc


class HttpServiceSettings(CommonSettings):
    """What the HTTP services (ingest, API) share: bind address and authentication."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth_enabled: bool = Field(True, description="False only for demos: every request is allowed.")
    tokens_file: Path = Field(
        default_factory=lambda: default_data_dir() / "tokens.json",
        description="Token hashes and scopes (JSON), written by `borderwatch token create`.",
    )
    tokens: SecretStr | None = Field(None, description="Extra token entries as JSON (containers).")
    tokens_last_used_file: Path | None = Field(
        None,
        description="Where tokens' last-used times are merged (default: beside the tokens "
        "file, `<tokens file>.last-used.json`). Set a writable path when the tokens file "
        "is read-only, e.g. mounted from a Kubernetes Secret.",
    )
    tls_cert_file: Path | None = Field(
        None, description="Server certificate (PEM, with its chain): serve https/wss only."
    )
    tls_key_file: Path | None = Field(None, description="Private key of tls_cert_file (PEM).")
    tls_client_ca_file: Path | None = Field(
        None,
        description="CA bundle (PEM) for mutual TLS: clients must present a certificate "
        "it signed, or the handshake fails.",
    )
    reuse_port: bool = Field(
        False,
        description="Bind BW_PORT with SO_REUSEPORT, so several processes of the service "
        "share it; the kernel spreads new connections over them.",
    )
    replica_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="A port of this process alone, beside BW_PORT: /readyz and /metrics "
        "of one replica when several share BW_PORT.",
    )
    max_query_bytes: int = Field(
        4096,
        ge=256,
        le=65_536,
        description="Longest query string; longer ones get 414 before anything parses them.",
    )

    @model_validator(mode="after")
    def _tls_pairs(self) -> HttpServiceSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: give both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file: mutual TLS needs tls_cert_file and tls_key_file")
        for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None
