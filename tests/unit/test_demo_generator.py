"""The demo scenario: repeatable from its seed, night peaks in local time, scripted moments."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.common.catalogue import Catalogue
from services.common.settings import DEFAULT_CONFIG_DIR
from services.demo.generator import BACKFILL_SECONDS, Moments, Scenario, night_factor

CAT = Catalogue.load(DEFAULT_CONFIG_DIR / "sections.yaml")
START = datetime(2026, 11, 30, 12, 0, 17, tzinfo=UTC).timestamp()
HOUR = 3600


def _all(s: Scenario, step: float) -> list[dict[str, object]]:
    out, t = [], START - 2 * 86400
    while t < START + 120:
        out += s.events(t, min(t + step, START + 120))
        t += step
    return out


def test_the_same_seed_gives_the_same_events_however_time_is_cut() -> None:
    one = _all(Scenario(CAT, 42, START), 6 * HOUR)
    again = _all(Scenario(CAT, 42, START), 1.0 * 617)  # other cuts, other posts
    assert len(one) > 500
    assert one == again  # ids, times, counts, sources: all
    other = _all(Scenario(CAT, 43, START), 6 * HOUR)
    assert [e["event_id"] for e in other] != [e["event_id"] for e in one]
    # In time order, and never an id twice.
    assert [e["observed_at"] for e in one] == sorted(e["observed_at"] for e in one)  # type: ignore[type-var]
    assert len({e["event_id"] for e in one}) == len(one)
    # The minutes drawn from the seed do not depend on when the demo started:
    # a restart with the same seed posts the same events (counted once).
    later = Scenario(CAT, 42, START + 3 * HOUR)
    window = (START - 86400, START - 80000)
    assert later.events(*window) == Scenario(CAT, 42, START).events(*window)


def test_nights_peak_at_01_local_time_in_each_country() -> None:
    for country, zone in (("LV", "Europe/Riga"), ("LT", "Europe/Vilnius"), ("PL", "Europe/Warsaw")):
        one_am = datetime(2026, 11, 30, 1, 0, tzinfo=ZoneInfo(zone)).timestamp()
        assert night_factor(one_am, country) == 1.0
        assert night_factor(one_am + 12 * HOUR, country) == 0.35
    # Warsaw is an hour behind Riga: 01:00 in Riga is midnight in Warsaw.
    riga_one_am = datetime(2026, 11, 30, 1, 0, tzinfo=ZoneInfo("Europe/Riga")).timestamp()
    assert night_factor(riga_one_am, "PL") < 1.0


def test_the_seven_days_have_a_daily_rhythm_in_every_country() -> None:
    s = Scenario(CAT, 7, START)
    events = s.events(START - BACKFILL_SECONDS, START)
    night: Counter[str] = Counter()
    day: Counter[str] = Counter()
    zones = {"LV": "Europe/Riga", "LT": "Europe/Vilnius", "PL": "Europe/Warsaw"}
    for e in events:
        if e["kind"] != "crossing_attempt":
            continue
        country = str(e["section_id"])[:2]
        local = datetime.fromisoformat(str(e["observed_at"])).astimezone(ZoneInfo(zones[country]))
        if local.hour >= 22 or local.hour < 4:
            night[country] += 1
        elif 10 <= local.hour < 16:
            day[country] += 1
    for country in zones:
        assert night[country] > 1.8 * day[country], (country, night, day)


def test_every_scripted_moment_is_in_the_first_minute_and_the_silence_before_it() -> None:
    s = Scenario(CAT, 5, START)
    roles = s.roles
    assert len(roles.hot) == 3 and {h[:2] for h in roles.hot} == {"LV", "LT", "PL"}
    assert len({roles.silent, roles.surge, roles.military, roles.humanitarian} | roles.hot) == 7
    first_minute = s.events(START, START + 61)
    surge = [e for e in first_minute if e["section_id"] == roles.surge]
    assert sum(int(e["count"]) for e in surge if e["kind"] == "crossing_attempt") >= 15  # type: ignore[call-overload]
    assert any(
        e["section_id"] == roles.military and e["kind"] == "military_activity" for e in first_minute
    )
    assert any(
        e["section_id"] == roles.humanitarian and e["kind"] == "humanitarian" for e in first_minute
    )
    # The silent section's sensors report until 13 h before start, then nothing
    # until 20 min after it.
    sensing = ("detection", "crossing_attempt")

    def sensed(t0: float, t1: float) -> list[dict[str, object]]:
        return [
            e for e in s.events(t0, t1) if e["section_id"] == roles.silent and e["kind"] in sensing
        ]

    assert sensed(START - 13 * HOUR, START + 20 * 60) == []
    assert sensed(START - 20 * HOUR, START - 13 * HOUR) != []
    assert sensed(START + 20 * 60, START + 3 * HOUR) != []
    # Moments can be brought closer (for a test); the events move with them.
    quick = Scenario(CAT, 5, START, Moments(surge_at=1, military_at=2, humanitarian_at=3))
    kinds = {e["kind"] for e in quick.events(START, START + 4)}
    assert {"crossing_attempt", "military_activity", "humanitarian"} <= kinds
