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
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    topic_prefix: str = Field(
        "bw.",
        pattern=r"^[A-Za-z0-9._-]{0,100}$",
        description="Prefix of every topic name (tests use a fresh one per test).",
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
    tls_cert_file: Path | None = Field(
        None, description="Server certificate (PEM, with its chain): serve https/wss only."
    )
    tls_key_file: Path | None = Field(None, description="Private key of tls_cert_file (PEM).")
    tls_client_ca_file: Path | None = Field(
        None,
        description="CA bundle (PEM) for mutual TLS: clients must present a certificate "
        "it signed, or the handshake fails.",
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
