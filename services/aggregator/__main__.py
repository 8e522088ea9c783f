"""Run one aggregator worker: ``python -m services.aggregator``.

Configured by ``BW_`` environment variables (see README); Faust's own
environment overrides (``BROKER_URL``...) are ignored on purpose.
"""

from __future__ import annotations

import sys

from services.common.errors import ConfigError


def main() -> None:
    try:
        # Each module registers its agents and timers on the one Faust app.
        from services.aggregator import (  # noqa: F401
            agents,
            assess_agent,
            reports_agent,
        )
    except ConfigError as exc:
        print(f"borderwatch aggregator: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    agents.run_worker()


if __name__ == "__main__":
    main()
