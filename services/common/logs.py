"""Logging set-up for the service processes."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
    # aiokafka logs every reconnect attempt at ERROR; our own warnings say it once.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
