"""Run ingest: ``python -m services.ingest`` (bind address, port and TLS from ``BW_``
variables: ``BW_HOST``, ``BW_PORT``, ``BW_TLS_CERT_FILE``, ``BW_TLS_KEY_FILE``,
``BW_TLS_CLIENT_CA_FILE``)."""

from services.common.serve import main
from services.ingest.settings import IngestSettings

if __name__ == "__main__":
    main("ingest", IngestSettings)
