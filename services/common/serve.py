"""Run an HTTP service under uvicorn with the settings' bind address and TLS.

``python -m services.api`` and ``python -m services.ingest`` come here. With
``BW_TLS_CERT_FILE`` and ``BW_TLS_KEY_FILE`` the port speaks only https/wss
(a plain-HTTP request fails the TLS handshake); with ``BW_TLS_CLIENT_CA_FILE``
too, every client must present a certificate signed by that CA (mutual TLS).
Plain ``uvicorn services.api.app:create_app --factory`` still works, without TLS.

Scale-out on one host: with ``BW_REUSE_PORT=true`` several processes bind the
same ``BW_PORT`` (SO_REUSEPORT; Linux lets only processes of the same user
join, and spreads new connections over them), and ``BW_REPLICA_PORT`` gives
each one a port of its own, so its ``/readyz`` and ``/metrics`` can be read.
"""

from __future__ import annotations

import copy
import logging
import re
import socket
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


def listen_socket(host: str, port: int, *, reuse_port: bool, name: str) -> socket.socket:
    """A bound TCP socket for uvicorn; a taken port is a ConfigError naming ``name``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{name} {port}: cannot bind {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def main(service: str, settings_cls: type[HttpServiceSettings], **uvicorn_options: Any) -> None:
    import uvicorn

    try:
        settings = load_settings(settings_cls)
        check_tls_files(settings)
        sockets = None
        if settings.reuse_port or settings.replica_port is not None:
            sockets = [
                listen_socket(
                    settings.host, settings.port, reuse_port=settings.reuse_port, name="BW_PORT"
                )
            ]
            if settings.replica_port is not None:
                sockets.append(
                    listen_socket(
                        settings.host,
                        settings.replica_port,
                        reuse_port=False,
                        name="BW_REPLICA_PORT",
                    )
                )
    except ConfigError as exc:
        print(f"borderwatch {service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    config = uvicorn.Config(
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
    server = uvicorn.Server(config)
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run does when start-up failed
