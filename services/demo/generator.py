"""Scenario generator for demos: realistic field events for the catalogue's sections.

It posts to the ingest service like a field unit would. The scenario follows
the pattern seen on the Belarus border since 2021: most pressure at night
(local time of each country: Europe/Riga, Europe/Vilnius, Europe/Warsaw),
groups of a few to a few dozen people testing the fence, apprehensions
following detections, occasional incidents (stones thrown at patrols), rare
military activity near the line and humanitarian cases. Fixed sensors report
routine detections every hour or so. One section per country runs "hot".

What a viewer sees, by design (``start`` = when the demo starts):

1. **7 days of history first.** The past 7 days are posted in event-time
   order before any live event, so the aggregator counts all of them: each
   section's watermark moves forward with the backfill, never past it (an
   event older than the watermark minus the grace period would not count).
   With ``--api-url``, a section that already has events (a restart on kept
   data) is backfilled only after its last event.
2. **Every country counts events** as soon as the backfill is in (seconds).
3. **An alert of every rule type of deploy/config/rules.yaml** within the first
   minutes: ``threshold`` (the hot sections' 24 h counts), ``silence`` (one
   section's sensors fell silent 13 h before ``start``; they come back 20 min
   after it), ``surge`` (a burst of crossing attempts 40 s after ``start`` on a
   quiet section), ``any`` (military activity at +50 s, a humanitarian case at
   +60 s), and ``report_discrepancy`` (the first round of official statements,
   right after the backfill, has one figure far from the field counts; see
   reports.py).
4. **Repeatable.** The events of each section and minute are drawn from a
   generator seeded with ``(seed, section, minute)``, so the same ``--seed``
   gives the same events, ids included, however the time is cut into posts;
   the scripted moments above are placed relative to ``start`` (same seed and
   start: the same sequence). A repeat run with the same seed re-posts the same
   ids for the same minutes, which the aggregator counts once.

Run: ``python -m services.demo --ingest-url http://127.0.0.1:8081 --token …``
(``borderwatch up --demo [--seed N]`` does it for you).
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.common.catalogue import Catalogue, Section
from services.common.errors import ConfigError
from services.common.settings import CommonSettings, load_settings
from services.demo.reports import ReportWriter

log = logging.getLogger("borderwatch.demo")

DAY = 86400
HOUR = 3600
#: Events are drawn per section and minute (the unit of repeatability).
SLOT = 60
#: Follow-up events (crossing, apprehension, …) come up to this long after a detection.
FOLLOW_UP = 20 * 60
BACKFILL_SECONDS = 7 * DAY

# Relative pressure by country (Latvia's worst day: 164 attempts; the whole
# border: > 200 a day is "usual").
COUNTRY_WEIGHT = {"LV": 1.0, "LT": 0.7, "PL": 1.3}
COUNTRY_ZONE = {"LV": "Europe/Riga", "LT": "Europe/Vilnius", "PL": "Europe/Warsaw"}
GROUPS_PER_DAY = 1.5
HOT_GROUPS_PER_HOUR = 1.0
ROUTINE_PER_HOUR = 1.5
# The mean of night_factor over a day: rates are scaled so the daily mean holds.
_NIGHT_MEAN = 0.675
SOURCES = {
    "detection": ["thermal_camera", "drone", "fence_sensor", "ground_sensor"],
    "crossing_attempt": ["thermal_camera", "fence_sensor", "patrol", "drone"],
    "apprehension": ["patrol"],
    "incident": ["patrol"],
    "military_activity": ["drone", "border_post", "patrol"],
    "humanitarian": ["patrol", "other"],
}


@dataclass(frozen=True)
class Moments:
    """When the scripted moments happen, seconds after ``start`` (module docstring);
    a test may bring them closer, the mechanism stays the same."""

    silent_from: float = -13 * HOUR
    silent_until: float = 20 * 60
    surge_at: float = 40.0
    military_at: float = 50.0
    humanitarian_at: float = 60.0


_ZONES: dict[str, ZoneInfo] = {}


def night_factor(ts: float, country: str) -> float:
    """Most attempts happen at night, local time: 1.0 near 01:00, 0.35 near 13:00."""
    zone = _ZONES.get(country)
    if zone is None:
        zone = _ZONES[country] = ZoneInfo(COUNTRY_ZONE.get(country, "UTC"))
    local = datetime.fromtimestamp(ts, zone)
    hour = local.hour + local.minute / 60
    return 0.35 + 0.65 * (1 + math.cos((hour - 1) / 24 * 2 * math.pi)) / 2


@dataclass(frozen=True)
class Roles:
    """Which sections play which part (drawn from the seed)."""

    hot: frozenset[str]
    silent: str
    surge: str
    military: str
    humanitarian: str


class Scenario:
    """The demo's events as a function of the seed (and of ``start`` for the scripted
    moments): :meth:`events` gives those of any time range."""

    def __init__(
        self, catalogue: Catalogue, seed: int, start: float, moments: Moments | None = None
    ) -> None:
        self.seed = seed
        self.start = start
        self.moments = moments or Moments()
        self.sections = list(catalogue.values())
        self.roles = self._cast(random.Random(f"borderwatch-demo/{seed}/roles"))

    def _cast(self, rng: random.Random) -> Roles:
        by_country: dict[str, list[Section]] = {}
        for s in self.sections:
            by_country.setdefault(s.country, []).append(s)
        hot = {rng.choice(sorted(v, key=lambda s: s.id)).id for _, v in sorted(by_country.items())}
        calm = sorted(s.id for s in self.sections if s.id not in hot)
        with_sensors = [
            sid for sid in calm if any(s.id == sid and s.sensors for s in self.sections)
        ]
        silent = rng.choice(with_sensors or calm)
        others = [sid for sid in calm if sid != silent]
        surge, military, humanitarian = rng.sample(others, 3) if len(others) >= 3 else [calm[0]] * 3
        return Roles(frozenset(hot), silent, surge, military, humanitarian)

    def events(self, t0: float, t1: float) -> list[dict[str, Any]]:
        """Every event observed in ``[t0, t1)``, in time order (ties by id)."""
        out: list[dict[str, Any]] = []
        first, last = math.floor((t0 - FOLLOW_UP) / SLOT), math.floor(t1 / SLOT)
        for section in self.sections:
            for slot in range(first, last + 1):
                out.extend(e for e in self._slot(section, slot) if t0 <= e["ts"] < t1)
        out.extend(e for e in self._scripted() if t0 <= e["ts"] < t1)
        out.sort(key=lambda e: (e["ts"], e["event_id"]))
        for e in out:
            del e["ts"]
        return out

    def _silenced(self, section: Section, ts: float) -> bool:
        return (
            section.id == self.roles.silent
            and self.start + self.moments.silent_from <= ts < self.start + self.moments.silent_until
        )

    def _slot(self, section: Section, slot: int) -> Iterator[dict[str, Any]]:
        """The events of the groups and sensor readings that start in one minute."""
        rng = random.Random(f"borderwatch-demo/{self.seed}/{section.id}/{slot}")
        begin = slot * SLOT
        night = night_factor(begin, section.country) / _NIGHT_MEAN
        if section.id in self.roles.hot:
            groups = HOT_GROUPS_PER_HOUR / HOUR * SLOT * night
        else:
            weight = COUNTRY_WEIGHT.get(section.country, 1.0)
            groups = GROUPS_PER_DAY / DAY * SLOT * weight * night
        if self._silenced(section, begin):
            return
        event = _Maker(section, rng)
        for _ in range(_poisson(rng, groups)):
            size = max(1, int(rng.lognormvariate(2.0, 0.7)))
            t = begin + rng.uniform(0, SLOT)
            yield event("detection", t, size)
            yield event("crossing_attempt", t + 60, size)
            if rng.random() < 0.6:
                yield event("apprehension", t + 600, max(1, size // 2))
            if rng.random() < 0.08:
                yield event("incident", t + 120, 1)
            if rng.random() < 0.02:
                yield event("humanitarian", t + 900, rng.randint(1, 3))
        if section.sensors and rng.random() < ROUTINE_PER_HOUR / HOUR * SLOT * night:
            yield event("detection", begin + rng.uniform(0, SLOT), 1)  # wildlife, a patrol
        # Military activity near the line: about once in three days a section.
        if rng.random() < SLOT / (3 * DAY):
            yield event("military_activity", begin + rng.uniform(0, SLOT), rng.randint(1, 4))

    def _scripted(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(f"borderwatch-demo/{self.seed}/scripted/{self.start}")
        by_id = {s.id: s for s in self.sections}
        surge = _Maker(by_id[self.roles.surge], rng)
        for i, size in enumerate((8, 7, 7)):  # 22 crossing attempts within two seconds
            yield surge("crossing_attempt", self.start + self.moments.surge_at + i * 0.5, size)
        yield _Maker(by_id[self.roles.military], rng)(
            "military_activity", self.start + self.moments.military_at, 2
        )
        yield _Maker(by_id[self.roles.humanitarian], rng)(
            "humanitarian", self.start + self.moments.humanitarian_at, 2
        )


class _Maker:
    """Builds one section's events from one random generator."""

    def __init__(self, section: Section, rng: random.Random) -> None:
        self.section = section
        self.rng = rng

    def __call__(self, kind: str, ts: float, count: int) -> dict[str, Any]:
        rng, section = self.rng, self.section
        source = rng.choice(SOURCES[kind])
        return {
            "ts": ts,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "kind": kind,
            "section_id": section.id,
            "observed_at": datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds"),
            "count": count,
            "source": {
                "type": source,
                "id": f"{section.id}-{source[:2].upper()}-{rng.randint(1, 9):02d}",
            },
            "confidence": rng.choices(["low", "medium", "high"], weights=[1, 3, 4])[0],
            "location": {
                "lat": round(section.centre.lat + rng.uniform(-0.03, 0.03), 4),
                "lon": round(section.centre.lon + rng.uniform(-0.03, 0.03), 4),
            },
        }


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method is fine for the small rates used here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _post(
    client: httpx.Client,
    path: str,
    events: list[dict[str, Any]],
    writer: ReportWriter | None = None,
) -> int:
    """Post events (never ahead of the clock); returns how many ingest accepted."""
    if not events:
        return 0
    for attempt in range(5):
        try:
            resp = client.post(path, json=events)
        except httpx.HTTPError as exc:
            log.warning("post failed: %r", exc)
        else:
            if resp.status_code == 202:
                body = resp.json()
                if body.get("rejected"):
                    log.warning("rejected: %s", body["rejected"][:3])
                accepted = set(body.get("accepted") or [])
                if writer is not None:
                    writer.observe(e for e in events if e["event_id"] in accepted)
                return len(accepted)
            log.warning("ingest answered %s: %s", resp.status_code, resp.text[:300])
            if resp.status_code < 500 and resp.status_code != 429:
                return 0
        time.sleep(0.5 * (attempt + 1))
    return 0


def _post_reports(client: httpx.Client, path: str, reports: list[dict[str, Any]]) -> None:
    try:
        resp = client.post(path, json=reports)
    except httpx.HTTPError as exc:
        log.warning("report post failed: %r", exc)
        return
    if resp.status_code != 202:
        log.warning("ingest answered %s to reports: %s", resp.status_code, resp.text[:300])


def backfill(
    client: httpx.Client,
    scenario: Scenario,
    writer: ReportWriter,
    resume_after: dict[str, float],
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Post the 7 days before ``scenario.start`` in event-time order, 6 hours a post;
    a section in ``resume_after`` only after that time. Returns the events accepted."""
    start = scenario.start
    t, accepted = start - BACKFILL_SECONDS, 0
    while t < start and not stop():
        end = min(t + 6 * HOUR, start)
        chunk = [
            e
            for e in scenario.events(t, end)
            if e["section_id"] not in resume_after
            or datetime.fromisoformat(e["observed_at"]).timestamp() > resume_after[e["section_id"]]
        ]
        accepted += _post(client, "/v1/field-events", chunk, writer)
        t = end
    return accepted


def run(
    client: httpx.Client,
    catalogue: Catalogue,
    *,
    seed: int,
    interval: float = 1.0,
    duration: float | None = None,
    report_interval: float = 120.0,
    resume_after: dict[str, float] | None = None,
    moments: Moments | None = None,
    stop: Callable[[], bool] = lambda: False,
    progress: Callable[[str, int], None] = lambda stage, accepted: None,
) -> int:
    """Backfill, post the first report round, then post live until ``duration``
    seconds have passed or ``stop()`` is true; returns the events ingest accepted.
    ``client``'s base URL is ingest's. ``progress`` hears "backfilled" and "live"."""
    started = time.time()
    scenario = Scenario(catalogue, seed, started, moments)
    writer = ReportWriter(seed=seed)
    roles = scenario.roles
    log.info(
        "demo: seed %s; hot %s, silent sensors %s, surge %s, military %s, humanitarian %s",
        seed,
        sorted(roles.hot),
        roles.silent,
        roles.surge,
        roles.military,
        roles.humanitarian,
    )
    accepted = backfill(client, scenario, writer, resume_after or {}, stop)
    log.info("demo: backfilled 7 days, %d events accepted", accepted)
    progress("backfilled", accepted)
    _post_reports(client, "/v1/reports", writer.round(time.time()))
    last = started
    last_reports = time.time()
    while not stop() and (duration is None or time.time() - started < duration):
        time.sleep(interval)
        now = time.time()
        accepted += _post(client, "/v1/field-events", scenario.events(last, now), writer)
        last = now
        if now - last_reports >= report_interval:
            _post_reports(client, "/v1/reports", writer.round(now))
            last_reports = now
    progress("live", accepted)
    return accepted


def last_events(
    api_url: str, headers: dict[str, str], verify: ssl.SSLContext | bool
) -> dict[str, float]:
    """Each section's last event time from the API (a restart on kept data)."""
    try:
        resp = httpx.get(
            api_url.rstrip("/") + "/api/v1/sections", headers=headers, timeout=10, verify=verify
        )
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("demo: could not read the sections' last events (%r); backfilling all", exc)
        return {}
    return {
        s["section_id"]: datetime.fromisoformat(s["last_event_at"]).timestamp()
        for s in resp.json()
        if s.get("last_event_at")
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--ingest-url", required=True)
    parser.add_argument("--api-url", default=None, help="resume each section after its last event")
    parser.add_argument("--token", default=None, help="bearer token with the ingest:field scope")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between live posts")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same events")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument(
        "--report-interval", type=float, default=120.0, help="seconds between report rounds"
    )
    parser.add_argument("--cacert", default=None, help="CA file to trust for an https ingest")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(CommonSettings)
        catalogue = Catalogue.load(settings.sections_file)
    except ConfigError as exc:
        print(f"borderwatch demo: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    if args.seed is None:
        log.info("demo: seed %d (pass --seed %d to repeat this run)", seed, seed)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=args.cacert) if args.cacert else True
    )
    resume = last_events(args.api_url, headers, verify) if args.api_url else {}
    with httpx.Client(
        base_url=args.ingest_url.rstrip("/"), headers=headers, timeout=10.0, verify=verify
    ) as client:
        run(
            client,
            catalogue,
            seed=seed,
            interval=args.interval,
            duration=args.duration,
            report_interval=args.report_interval,
            resume_after=resume,
            stop=lambda: stopping,
        )
