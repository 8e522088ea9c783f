"""Faust's broker credentials, from the shared Kafka settings.

The Faust app (``app.py``) passes these as ``broker_credentials``; Faust turns
them into the same aiokafka options that ``services.common.kafka.client_options``
gives the other services' clients (``tests/unit/aggregator/test_credentials.py``
checks both agree).
"""

from __future__ import annotations

import faust

from services.common.kafka import ssl_context
from services.common.settings import CommonSettings


def broker_credentials(
    settings: CommonSettings,
) -> faust.SASLCredentials | faust.SSLCredentials | None:
    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password is not None else None,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
