"""API settings (``BW_`` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from services.common.settings import DEFAULT_CONFIG_DIR, HttpServiceSettings

# uvicorn flags the API runs with (``borderwatch up``, docker-compose.yml, the benchmark).
# permessage-deflate compresses every frame once per client, in the event loop: with
# batched feed frames it cost 34 us of API CPU per delivered message against 3 us
# without (bench/feeds, 300 clients x 200 updates/s), so feeds go uncompressed.
UVICORN_FLAGS = ("--ws-per-message-deflate", "false")


class ApiSettings(HttpServiceSettings):
    port: int = Field(8080, ge=1, le=65535)
    rules_file: Path = Field(
        DEFAULT_CONFIG_DIR / "rules.yaml",
        description="Alert rules (YAML), the aggregator's: the history API gives a past "
        "hour the level that their ladders give its counts.",
    )
    feed_queue_size: int = Field(
        1000,
        ge=10,
        description="How many messages a feed client may be behind, while its socket has "
        "taken nothing for a second, before it is dropped (4008).",
    )
    feed_flush_seconds: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Feed writers wake at most this often; what arrived meanwhile goes "
        "in one frame per client.",
    )
    view_fetch_wait_ms: int = Field(
        20,
        ge=0,
        le=500,
        description="The view's Kafka fetches wait up to this long to gather records "
        "(one fetch of every partition per period under load, instead of one per new "
        "record); adds at most this much to feed latency.",
    )
    feed_replay_size: int = Field(
        10_000, ge=100, description="Messages kept for clients that reconnect with a cursor."
    )
    heartbeat_seconds: float = Field(15.0, gt=0, description="Idle feed heartbeat period.")
    recent_events: int = Field(2000, ge=10, description="Field events kept for /events/recent.")
    recent_reports: int = Field(500, ge=10, description="Reports kept for /reports/recent.")
    produce_timeout: float = Field(5.0, gt=0, description="Longest wait for Kafka on an ack.")
    max_alerts: int = Field(10_000, ge=100, description="Alerts kept in the view.")
    rate_limit_per_second: float = Field(
        50.0, ge=0, description="REST requests per second per token (token bucket; 0: no limit)."
    )
    rate_limit_burst: int = Field(100, ge=1, description="REST requests a token may burst.")
    feed_max_per_token: int = Field(
        20,
        ge=0,
        description="Most feed connections (WebSocket and SSE) one token may hold open "
        "in one API process (0: no cap; no cap either with auth off).",
    )
    audit_recent: int = Field(
        1000, ge=10, description="Newest audit records kept for GET /api/v1/audit."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (closed by default)."
    )
    alertmanager_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="Alertmanager base URL (alerts go to {url}/api/v2/alerts); unset = no push.",
    )
    alertmanager_resend_seconds: float = Field(
        60.0, gt=0, description="Firing alerts are re-sent to Alertmanager this often."
    )
    alertmanager_timeout: float = Field(
        2.0, gt=0, description="Longest wait for one request to Alertmanager."
    )
    alertmanager_username: str | None = Field(
        None, description="Basic-auth user for Alertmanager (its --web.config.file)."
    )
    alertmanager_password: SecretStr | None = Field(
        None, description="Basic-auth password for Alertmanager."
    )
    alertmanager_bearer_token: SecretStr | None = Field(
        None,
        description="Bearer token for Alertmanager (e.g. behind an authenticating proxy); "
        "instead of basic auth.",
    )
    alertmanager_ca_file: Path | None = Field(
        None,
        description="CA bundle (PEM) that signed Alertmanager's https certificate; "
        "unset = the system's CAs.",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="This API's public base URL, for links in what it sends elsewhere.",
    )

    @field_validator(
        "alertmanager_url",
        "public_url",
        "alertmanager_username",
        "alertmanager_password",
        "alertmanager_bearer_token",
        "alertmanager_ca_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An optional Kubernetes secret key that is absent arrives as "".
        return None if value == "" else value

    @model_validator(mode="after")
    def _alertmanager_credentials(self) -> ApiSettings:
        basic = self.alertmanager_username is not None or self.alertmanager_password is not None
        if (self.alertmanager_username is None) != (self.alertmanager_password is None):
            raise ValueError(
                "BW_ALERTMANAGER_USERNAME and BW_ALERTMANAGER_PASSWORD: give both or neither"
            )
        if basic and self.alertmanager_bearer_token is not None:
            raise ValueError(
                "BW_ALERTMANAGER_BEARER_TOKEN: give it or BW_ALERTMANAGER_USERNAME/PASSWORD, "
                "not both"
            )
        wants = [
            name
            for name in ("username", "password", "bearer_token", "ca_file")
            if getattr(self, f"alertmanager_{name}") is not None
        ]
        if wants and self.alertmanager_url is None:
            raise ValueError(
                f"BW_ALERTMANAGER_{wants[0].upper()} is set but BW_ALERTMANAGER_URL is not: "
                "nothing would be pushed"
            )
        ca = self.alertmanager_ca_file
        if ca is not None:
            if not (self.alertmanager_url or "").startswith("https://"):
                raise ValueError(
                    "BW_ALERTMANAGER_CA_FILE: needs an https:// BW_ALERTMANAGER_URL, "
                    f"got {self.alertmanager_url}"
                )
            if not ca.is_file():
                raise ValueError(f"BW_ALERTMANAGER_CA_FILE: no such file {ca}")
        return self
