"""Run the API: ``python -m services.api`` (bind address, port and TLS from ``BW_``
variables: ``BW_HOST``, ``BW_PORT``, ``BW_TLS_CERT_FILE``, ``BW_TLS_KEY_FILE``,
``BW_TLS_CLIENT_CA_FILE``)."""

from services.api.settings import ApiSettings
from services.common.serve import main

if __name__ == "__main__":
    # As UVICORN_FLAGS: feeds go uncompressed (see services/api/settings.py).
    main("api", ApiSettings, ws_per_message_deflate=False)
