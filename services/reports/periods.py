"""Period phrases resolved to a time range in the country's own time zone.

"Over the weekend" in a statement published on Monday 09:00 in Riga is
Saturday 00:00 to Monday 00:00 Riga time. A resolved period never ends after
the report was published: a figure cannot count the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

ZONES: dict[str, ZoneInfo] = {
    "LV": ZoneInfo("Europe/Riga"),
    "LT": ZoneInfo("Europe/Vilnius"),
    "PL": ZoneInfo("Europe/Warsaw"),
}
# The whole EU-Belarus border and unknown countries: the middle zone of the three.
DEFAULT_ZONE = ZoneInfo("Europe/Vilnius")


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    start: datetime | None
    end: datetime | None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "label": self.label,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


UNKNOWN = Period("unknown", None, None)


def zone_for(area: str) -> ZoneInfo:
    return ZONES.get(area, DEFAULT_ZONE)


def _midnight(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def _local_midnight(day: datetime, tz: ZoneInfo) -> datetime:
    # Rebuild from the calendar date so a DST change inside the range is handled.
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def resolve(
    anchor: str,
    label: str,
    published_at: datetime,
    area: str,
    *,
    hours: int = 0,
    days: int = 0,
    month: int | None = None,
    year: int | None = None,
    day: int | None = None,
) -> Period:
    """The range of ``anchor`` for a report published at ``published_at`` about ``area``.

    ``date``: one calendar day named by its day and month ("on 29 November"), the
    latest such day that has begun (last year's when the date is still to come)."""
    tz = zone_for(area)
    now = published_at.astimezone(tz)
    today = _local_midnight(now, tz)
    start: datetime | None
    end: datetime | None = now
    if anchor == "rolling_hours":
        start = now - timedelta(hours=hours or 24)
    elif anchor == "yesterday":
        start = _local_midnight(today - timedelta(days=1), tz)
        end = today
    elif anchor == "today":
        start = today
    elif anchor == "weekend":
        # The latest weekend that has begun: Saturday 00:00 to Monday 00:00.
        saturday = today - timedelta(days=(now.weekday() - 5) % 7)
        start = _local_midnight(saturday, tz)
        end = _local_midnight(saturday + timedelta(days=2), tz)
    elif anchor in ("rolling_days", "rolling_days_n"):
        if days <= 0:
            return UNKNOWN
        start = now - timedelta(days=days)
    elif anchor == "month":
        if month is not None:
            y = now.year if month <= now.month else now.year - 1
            start = datetime(y, month, 1, tzinfo=tz)
            nxt = datetime(y + (month == 12), month % 12 + 1, 1, tzinfo=tz)
            end = nxt
        else:
            start = datetime(now.year, now.month, 1, tzinfo=tz)
    elif anchor == "year":
        y = year if year is not None and year <= now.year else now.year
        start = datetime(y, 1, 1, tzinfo=tz)
        end = datetime(y + 1, 1, 1, tzinfo=tz)
    elif anchor == "date":
        if month is None or day is None:
            return UNKNOWN
        y = now.year
        try:
            first = datetime(y, month, day, tzinfo=tz)
            if first > now:
                first = datetime(y - 1, month, day, tzinfo=tz)
        except ValueError:  # 31 November: no such day
            return UNKNOWN
        start = first
        end = _local_midnight(first + timedelta(days=1, hours=12), tz)
    elif anchor == "cumulative":
        if year is not None and year <= now.year:
            start = datetime(year, month or 1, 1, tzinfo=tz)
        else:
            start = None
    else:
        return UNKNOWN
    if end is not None and end > now:
        end = now
    if start is not None and end is not None and start > end:
        return UNKNOWN
    return Period(label, start, end)
