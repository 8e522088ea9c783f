"""Run an HTTP service under uvicorn with the settings' bind address and TLS.

``python -m services.api`` and ``python -m services.ingest`` come here. With
``BW_TLS_CERT_FILE`` and ``BW_TLS_KEY_FILE`` the port speaks only https/wss
(a plain-HTTP request fails the TLS handshake); with ``BW_TLS_CLIENT_CA_FILE``
too, every client must present a certificate signed by that CA (mutual TLS).
Plain ``uvicorn services.api.app:create_app --factory`` still works, without TLS.
"""

from __future__ import annotations

import copy
import logging
import re
import ssl
import sys
from typing import Any

from services.common.errors import ConfigError
from services.common.settings import HttpServiceSettings, load_settings


def tls_options(settings: HttpServiceSettings) -> dict[str, Any]:
    """uvicorn's ssl options for ``settings`` (empty without TLS)."""
    if settings.tls_cert_file is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
    }
    if settings.tls_client_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.tls_client_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


def check_tls_files(settings: HttpServiceSettings) -> None:
    """Load the certificate, key and client CA once, so a bad file stops start-up
    with a message naming the variable instead of a traceback per connection."""
    if settings.tls_cert_file is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"BW_TLS_CERT_FILE / BW_TLS_KEY_FILE: cannot load {settings.tls_cert_file} "
            f"with {settings.tls_key_file}: {exc}"
        ) from exc
    if settings.tls_client_ca_file is not None:
        try:
            context.load_verify_locations(str(settings.tls_client_ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"BW_TLS_CLIENT_CA_FILE: cannot load {settings.tls_client_ca_file}: {exc}"
            ) from exc


# ``bw_<id>_<secret>``: uvicorn logs a WebSocket handshake with its path and query,
# where a feed's ``?token=`` is.
_TOKEN = re.compile(r"(bw_[0-9A-Za-z]{1,32}_)[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1…", text)


class RedactTokens(logging.Filter):
    """Keeps token secrets out of uvicorn's log lines (the id stays, for tracing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        return True


def log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config


def main(service: str, settings_cls: type[HttpServiceSettings], **uvicorn_options: Any) -> None:
    import uvicorn

    try:
        settings = load_settings(settings_cls)
        check_tls_files(settings)
    except ConfigError as exc:
        print(f"borderwatch {service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    uvicorn.run(
        f"services.{service}.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        access_log=False,  # a query-string token (feeds, SSE) must never reach a log
        log_config=log_config(),
        # uvicorn's INFO lines are one per connection; the app logs at BW_LOG_LEVEL.
        log_level="debug" if settings.log_level == "DEBUG" else "warning",
        **tls_options(settings),
        **uvicorn_options,
    )
