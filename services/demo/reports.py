"""Demo report events: daily statements in en, pl, lv, lt, press and NGO notes.

Written for the demo so that the report analysis, the discrepancy rule and the
assessment show life: an official statement states the crossing attempts the
demo really posted for its country in the last 24 hours (it agrees), or, about
one time in three, a figure far from it (it disagrees, and a
``report_discrepancy`` alert fires until the next agreeing statement). Press
and NGO notes carry signals: military vehicles at the line, disinformation,
pushbacks, stones thrown at patrols.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

DAY = 86400.0

OFFICIAL = {
    "LV": (
        "lv",
        "Valsts robežsardze",
        "Situācija uz Latvijas\u2013Baltkrievijas robežas",
        "Pēdējās diennakts laikā nelikumīgi šķērsot Latvijas\u2013Baltkrievijas robežu atturētas "
        "{n} personas. Robežsargiem nebija jāpielieto speciālie līdzekļi.",
    ),
    "LT": (
        "lt",
        "Valstybės sienos apsaugos tarnyba",
        "Padėtis Lietuvos\u2013Baltarusijos pasienyje",
        "Per pastarąją parą VSAT pareigūnai apgręžė {n} neteisėtus migrantus. "
        "Pasieniečiams nereikėjo panaudoti ginklų.",
    ),
    "PL": (
        "pl",
        "Straż Graniczna",
        "Sytuacja na granicy polsko-białoruskiej",
        "W ciągu ostatniej doby odnotowano {n} prób nielegalnego przekroczenia granicy "
        "z Białorusi. Funkcjonariusze nie musieli użyć broni.",
    ),
}
ENGLISH = (
    "State Border Guard of Latvia",
    "Attempts to cross the border in the last 24 hours",
    "In the last 24 hours, border guards prevented {n} attempts to cross the "
    "Latvian-Belarusian border illegally.",
)
NOTES: list[tuple[str, str, str, str, str, str]] = [
    # (country, language, source type, source name, title, text)
    (
        "LV",
        "en",
        "media",
        "LSM",
        "Military vehicles seen at the border",
        "Residents say the Belarusian side brought migrants to the border in military "
        "vehicles overnight.",
    ),
    (
        "LT",
        "lt",
        "media",
        "LRT",
        "Dezinformacija apie pasieniečius",
        "Prokremliški kanalai skleidžia dezinformaciją apie Lietuvos pasieniečius.",
    ),
    (
        "PL",
        "pl",
        "ngo",
        "Grupa Granica",
        "Wywózki na granicy",
        "Grupa Granica alarmuje o wywózkach i informuje o osobach z hipotermią w lesie.",
    ),
    (
        "PL",
        "pl",
        "official",
        "Straż Graniczna",
        "Atak na patrol",
        "Cudzoziemcy rzucali kamieniami i gałęziami w polskie patrole.",
    ),
    (
        "LV",
        "lv",
        "official",
        "Valsts robežsardze",
        "Militārā tehnika pie robežas",
        "Baltkrievijas puse migrantus līdz robežai atveda ar militāro tehniku.",
    ),
]


class ReportWriter:
    """Keeps the demo's posted crossing attempts per country and writes reports."""

    def __init__(self, seed: int | None = None, disagree_every: int = 3) -> None:
        self.rng = random.Random(seed)
        self.crossings: dict[str, deque[tuple[float, int]]] = {c: deque() for c in OFFICIAL}
        self.disagree_every = disagree_every
        self.serial = 0

    def observe(self, events: Iterable[dict[str, Any]]) -> None:
        """Count the crossing attempts that ingest accepted (the field's own figure)."""
        for e in events:
            if e["kind"] == "crossing_attempt" and e["section_id"][:2] in self.crossings:
                ts = datetime.fromisoformat(e["observed_at"]).timestamp()
                self.crossings[e["section_id"][:2]].append((ts, int(e["count"])))

    def last_24h(self, country: str, now: float) -> int:
        # The backfill posts past hours after the live events: not in time order.
        q = self.crossings[country] = deque(x for x in self.crossings[country] if x[0] >= now - DAY)
        return sum(n for _, n in q)

    def _report(
        self, country: str, language: str, kind: str, name: str, title: str, text: str, now: float
    ) -> dict[str, Any]:
        self.serial += 1
        return {
            "report_id": f"demo-{country.lower()}-{kind}-{int(now)}-{self.serial}",
            "source": {"name": name, "type": kind},
            "country": country,
            "published_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "title": title,
            "text": text,
            "language": language,
        }

    def statement(self, country: str, now: float, english: bool = False) -> dict[str, Any]:
        """An official daily statement; every ``disagree_every``-th one is far off."""
        counted = self.last_24h(country, now)
        n = counted
        if self.serial % self.disagree_every == self.disagree_every - 1:
            n = counted * 3 + 40
        if english and country == "LV":
            name, title, text = ENGLISH
            return self._report(country, "en", "official", name, title, text.format(n=n), now)
        language, name, title, text = OFFICIAL[country]
        return self._report(country, language, "official", name, title, text.format(n=n), now)

    def note(self, now: float) -> dict[str, Any]:
        country, language, kind, name, title, text = self.rng.choice(NOTES)
        return self._report(country, language, kind, name, title, text, now)

    def round(self, now: float) -> list[dict[str, Any]]:
        """One statement per country (the Latvian one sometimes in English) and one note."""
        out = [self.statement(c, now, english=self.rng.random() < 0.3) for c in sorted(OFFICIAL)]
        out.append(self.note(now))
        return out
