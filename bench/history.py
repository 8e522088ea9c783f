"""Benchmark: what one ``GET /api/v1/state?at=`` costs the API (the view's work).

    python -m bench.history [--sections 200] [--hours 360] [--alerts 1000] [--requests 30]

Fills a view with ``--sections`` sections of ``--hours`` hourly counts each
(what ``bw.section-hours`` gives it; 360 = the 15 days it keeps) and
``--alerts`` alerts of three transitions each, with the default rules, then
times ``View.picture_at`` at random hours of the last 7 days, then the whole
route (``GET /api/v1/state?at=`` through the app, JSON encoding included; the
app's Kafka lifespan is not started: the view is filled here). Prints figures;
it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from schemas.models import KINDS
from services.aggregator.rules import load_rules
from services.api.app import create_app
from services.api.history import Rebuilder
from services.api.settings import ApiSettings
from services.api.view import View
from services.common.catalogue import Catalogue, Section
from services.common.settings import DEFAULT_CONFIG_DIR


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, default=200)
    parser.add_argument("--hours", type=int, default=360)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    countries = ("LV", "LT", "PL")
    sections = [
        Section.model_validate(
            {
                "id": f"{countries[i % 3]}-S{i:04d}",
                "name": f"section {i}",
                "country": countries[i % 3],
                "neighbour": "BY",
                "centre": {"lat": 55.0, "lon": 27.0},
                "polyline": [[55.0, 27.0], [55.1, 27.1]],
                "sensors": ["thermal_camera"],
            }
        )
        for i in range(args.sections)
    ]
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    sections_file = work / "sections.yaml"
    sections_file.write_text(
        yaml.safe_dump({"sections": [s.model_dump(mode="json") for s in sections]}),
        encoding="utf-8",
    )
    app = create_app(
        ApiSettings(
            sections_file=sections_file,
            auth_enabled=False,
            max_alerts=max(100, args.alerts),
            tokens_file=work / "tokens.json",
        )
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    view: View = app.state.view
    catalogue = Catalogue(sections)
    assert list(view.catalogue) == list(catalogue)
    view.rebuilder = Rebuilder(catalogue, load_rules(DEFAULT_CONFIG_DIR / "rules.yaml"))
    rng = random.Random(1)
    now = time.time() // 3600 * 3600
    for s in sections:
        for h in range(args.hours):
            counts = {k: rng.randint(0, 5) for k in KINDS}
            view.apply_hour(
                {"section_id": s.id, "start": _iso(now - h * 3600), "version": 1, "counts": counts}
            )
    for a in range(args.alerts):
        sid = sections[a % len(sections)].id
        began = now - rng.uniform(0, 7 * 86400)
        for seq, (status, after) in enumerate(
            (("firing", 0), ("firing", 3600), ("resolved", 7200))
        ):
            view.apply_alert(
                {
                    "alert_id": f"bench.{sid}.{a}",
                    "seq": seq + 1,
                    "status": status,
                    "severity": "high",
                    "section_id": sid,
                    "country": sid[:2],
                    "updated_at": _iso(began + after),
                }
            )
    took = []
    for _ in range(args.requests):
        at = now - rng.randint(1, 167) * 3600
        t0 = time.perf_counter()
        view.picture_at(at)
        took.append(time.perf_counter() - t0)
    _report("picture_at", args, took)
    client = TestClient(app)  # no lifespan: no Kafka; the view is the one filled above
    took = []
    for _ in range(args.requests):
        at = datetime.fromtimestamp(now - rng.randint(1, 167) * 3600 + 1, UTC).isoformat()
        t0 = time.perf_counter()
        resp = client.get("/api/v1/state", params={"at": at})
        took.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.text
    _report(f"GET /api/v1/state?at= ({len(resp.content) // 1024} KiB)", args, took)


def _report(what: str, args: argparse.Namespace, took: list[float]) -> None:
    took.sort()
    print(
        f"{what}: {args.sections} sections x {args.hours} hours held, {args.alerts} alerts: "
        f"median {statistics.median(took) * 1000:.0f} ms, "
        f"p90 {took[int(len(took) * 0.9)] * 1000:.0f} ms, max {took[-1] * 1000:.0f} ms "
        f"over {args.requests} requests"
    )


if __name__ == "__main__":
    main()
