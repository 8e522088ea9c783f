"""Fixtures shared by every test layer."""

from __future__ import annotations

import os

# Faust reads these to override App(...) arguments; tests must not inherit them.
for _name in ("BROKER_URL", "STORE_URL", "WEB_URL", "APP_DEBUG"):
    os.environ.pop(_name, None)
