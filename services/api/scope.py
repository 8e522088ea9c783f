"""Country-scoped tokens on the API: what a token limited to some countries may see.

A token created with ``--countries LV`` sees only Latvia's sections, alerts
(the country-level ``LV-ALL`` discrepancy alerts among them: an alert carries
its ``country``), acks, field events, reports, analyses and assessments. Lists
are filtered; a single object outside the scope is answered exactly as an
unknown one (the routes raise the same 404), so the answer never tells that
the data exists. A token without countries sees everything, through the same
functions, which then return their input untouched.

Plain Python (no FastAPI import): the routes and feeds call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.common.auth import Principal


def allowed(principal: Principal) -> frozenset[str]:
    """The countries ``principal`` is limited to; empty: every country."""
    return principal.countries


def sees(principal: Principal, country: str | None) -> bool:
    return not principal.countries or country in principal.countries


def only(principal: Principal, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items (each with a ``country``) ``principal`` may see."""
    if not principal.countries:
        return items if isinstance(items, list) else list(items)
    return [i for i in items if i.get("country") in principal.countries]


def event_country(event: dict[str, Any]) -> str:
    """A field event's country: its section id starts with it (the catalogue checks)."""
    return str(event.get("section_id", ""))[:2]


def only_events(
    principal: Principal, events: Iterable[dict[str, Any]], limit: int
) -> list[dict[str, Any]]:
    out = [e for e in events if sees(principal, event_country(e))]
    return out[:limit]


def picture(principal: Principal, whole: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/v1/state`` for ``principal``."""
    if not principal.countries:
        return whole
    # Every list in it (sections, countries, firing alerts) is of items with a country;
    # anything else (a time stamp) is not per country.
    return {
        key: only(principal, value) if isinstance(value, list) else value
        for key, value in whole.items()
    }
