"""Scenario generator for demos: realistic field events for the catalogue's sections.

It posts to the ingest service like a field unit would. The scenario follows
the pattern seen on the Belarus border since 2021: most pressure at night,
groups of a few to a few dozen people testing the fence in the swampy
stretches, apprehensions following detections, occasional incidents (stones
thrown at patrols), rare military activity near the line and humanitarian
cases. Some sections run "hot" so alerts fire within seconds.

Run: ``python -m services.demo --ingest-url http://127.0.0.1:8081 --token …``
(``borderwatch up --demo`` does it for you). It also posts report events
(``services/demo/reports.py``): daily statements that agree or disagree with
the field counts it posted, press and NGO notes.
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
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from services.common.catalogue import Catalogue, Section
from services.common.errors import ConfigError
from services.common.settings import CommonSettings, load_settings
from services.demo.reports import ReportWriter

log = logging.getLogger("borderwatch.demo")

# Relative pressure by country (Latvia's worst day: 164 attempts; the whole
# border: > 200 a day is "usual").
COUNTRY_WEIGHT = {"LV": 1.0, "LT": 0.7, "PL": 1.3}
GROUPS_PER_DAY = 1.5
HOT_GROUPS_PER_HOUR = 5.0
SOURCES = {
    "detection": ["thermal_camera", "drone", "fence_sensor", "ground_sensor"],
    "crossing_attempt": ["thermal_camera", "fence_sensor", "patrol", "drone"],
    "apprehension": ["patrol"],
    "incident": ["patrol"],
    "military_activity": ["drone", "border_post", "patrol"],
    "humanitarian": ["patrol", "other"],
}


def night_factor(ts: float) -> float:
    """Most attempts happen at night (local time ~ UTC+2): peak near 01:00, low at noon."""
    hour = (datetime.fromtimestamp(ts, UTC).hour + 2) % 24
    return 0.35 + 0.65 * (1 + math.cos((hour - 1) / 24 * 2 * math.pi)) / 2


class Scenario:
    def __init__(self, catalogue: Catalogue, seed: int | None = None, hot: int = 2) -> None:
        self.rng = random.Random(seed)
        self.sections = list(catalogue.values())
        self.hot = {s.id for s in self.rng.sample(self.sections, k=min(hot, len(self.sections)))}

    def _event(self, section: Section, kind: str, ts: float, count: int) -> dict[str, Any]:
        source = self.rng.choice(SOURCES[kind])
        jitter_lat = self.rng.uniform(-0.03, 0.03)
        jitter_lon = self.rng.uniform(-0.03, 0.03)
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "kind": kind,
            "section_id": section.id,
            "observed_at": datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds"),
            "count": count,
            "source": {
                "type": source,
                "id": f"{section.id}-{source[:2].upper()}-{self.rng.randint(1, 9):02d}",
            },
            "confidence": self.rng.choices(["low", "medium", "high"], weights=[1, 3, 4])[0],
            "location": {
                "lat": round(section.centre.lat + jitter_lat, 4),
                "lon": round(section.centre.lon + jitter_lon, 4),
            },
        }

    def step(self, ts: float, seconds: float) -> Iterator[dict[str, Any]]:
        """Events for the ``seconds`` of time ending at ``ts``."""
        night = night_factor(ts)
        for section in self.sections:
            if section.id in self.hot:
                # A surge: a group every ~12 minutes, so alerts fire within seconds.
                rate = HOT_GROUPS_PER_HOUR / 3600 * seconds
            else:
                # ~1.5 groups a day on an ordinary section: with 18 sections about
                # 250 people a day across the border, the "usual" level.
                weight = COUNTRY_WEIGHT.get(section.country, 1.0)
                rate = GROUPS_PER_DAY / 86400 * weight * night * seconds
            for _ in range(self._poisson(rate)):
                size = max(1, int(self.rng.lognormvariate(2.0, 0.7)))
                t = ts - self.rng.uniform(0, seconds)
                yield self._event(section, "detection", t, size)
                yield self._event(section, "crossing_attempt", t + 60, size)
                if self.rng.random() < 0.6:
                    yield self._event(section, "apprehension", t + 600, max(1, size // 2))
                if self.rng.random() < 0.08:
                    yield self._event(section, "incident", t + 120, 1)
                if self.rng.random() < 0.02:
                    yield self._event(section, "humanitarian", t + 900, self.rng.randint(1, 3))
            # Military activity near the line: about once in three days a section.
            if self.rng.random() < seconds / (3 * 86400):
                yield self._event(section, "military_activity", ts, self.rng.randint(1, 4))

    def _poisson(self, lam: float) -> int:
        # Knuth's method is fine for the small rates used here.
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1


def _post(
    client: httpx.Client,
    url: str,
    events: list[dict[str, Any]],
    writer: ReportWriter | None = None,
) -> None:
    now = time.time()
    # Never post into the future: the scenario's follow-up events may be ahead.
    events = [e for e in events if datetime.fromisoformat(e["observed_at"]).timestamp() <= now]
    if not events:
        return
    events.sort(key=lambda e: e["observed_at"])
    for attempt in range(5):
        try:
            resp = client.post(url, json=events)
        except httpx.HTTPError as exc:
            log.warning("post failed: %r", exc)
        else:
            if resp.status_code == 202:
                body = resp.json()
                if body.get("rejected"):
                    log.warning("rejected: %s", body["rejected"][:3])
                if writer is not None:
                    accepted = set(body.get("accepted") or [])
                    writer.observe(e for e in events if e["event_id"] in accepted)
                return
            log.warning("ingest answered %s: %s", resp.status_code, resp.text[:300])
            if resp.status_code < 500 and resp.status_code != 429:
                return
        time.sleep(0.5 * (attempt + 1))


def _post_reports(client: httpx.Client, url: str, reports: list[dict[str, Any]]) -> None:
    try:
        resp = client.post(url, json=reports)
    except httpx.HTTPError as exc:
        log.warning("report post failed: %r", exc)
        return
    if resp.status_code != 202:
        log.warning("ingest answered %s to reports: %s", resp.status_code, resp.text[:300])


def run(
    ingest_url: str,
    token: str | None,
    catalogue: Catalogue,
    *,
    backfill_hours: float,
    interval: float,
    seed: int | None,
    duration: float | None,
    report_interval: float = 120.0,
    cacert: str | None = None,
) -> None:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scenario = Scenario(catalogue, seed=seed)
    writer = ReportWriter(seed=seed)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = ingest_url.rstrip("/") + "/v1/field-events"
    reports_url = ingest_url.rstrip("/") + "/v1/reports"
    started = time.time()
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cacert) if cacert else True
    with httpx.Client(headers=headers, timeout=10.0, verify=verify) as client:
        # Live first, so the picture shows life within a second; then fill the
        # past hours in time order (inside the aggregator's grace period).
        _post(client, url, list(scenario.step(started, interval)), writer)
        t = started - backfill_hours * 3600
        while t < started - interval and not stop:
            chunk = list(scenario.step(t + 600, 600))
            _post(client, url, chunk, writer)
            t += 600
        log.info("demo: backfilled %.1f h; hot sections %s", backfill_hours, sorted(scenario.hot))
        _post_reports(client, reports_url, writer.round(time.time()))
        last = last_reports = time.time()
        while not stop and (duration is None or time.time() - started < duration):
            time.sleep(interval)
            now = time.time()
            _post(client, url, list(scenario.step(now, now - last)), writer)
            last = now
            if now - last_reports >= report_interval:
                _post_reports(client, reports_url, writer.round(now))
                last_reports = now


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--ingest-url", required=True)
    parser.add_argument("--token", default=None, help="bearer token with the ingest:field scope")
    parser.add_argument("--backfill-hours", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
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
    run(
        args.ingest_url,
        args.token,
        catalogue,
        backfill_hours=args.backfill_hours,
        interval=args.interval,
        seed=args.seed,
        duration=args.duration,
        report_interval=args.report_interval,
        cacert=args.cacert,
    )
