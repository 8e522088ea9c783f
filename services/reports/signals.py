"""Signal tags in a report: military activity, incidents, disinformation, ...

A trigger counts unless a negation stands just before it in the same clause or
just after it: "border guards did not have to use weapons", the standard
closing line of a daily statement, is no incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.reports.extract import AREAS, clause_areas
from services.reports.packs import Pack
from services.reports.text import Sentence

NEGATION_BEFORE = 45
NEGATION_AFTER = 22


@dataclass(frozen=True, slots=True)
class Signal:
    signal: str
    area: str
    evidence: str
    span: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "area": self.area,
            "evidence": self.evidence,
            "span": list(self.span),
        }


def sentence_signals(pack: Pack, sent: Sentence, country: str) -> list[Signal]:
    s = sent.text
    out: list[Signal] = []
    areas: list[tuple[int, int, str]] | None = None
    for name, pattern in pack.signals:
        for m in pattern.finditer(s):
            if areas is None:
                areas = clause_areas(pack, s, country if country in AREAS else "EU-BY")
            lo, hi, area = next(((a, b, c) for a, b, c in areas if a <= m.start() < b), areas[-1])
            if pack.negation.search(s, max(lo, m.start() - NEGATION_BEFORE), m.start()):
                continue
            if pack.negation.search(s, m.end(), min(hi, m.end() + NEGATION_AFTER)):
                continue
            out.append(Signal(name, area, s, (sent.start + m.start(), sent.start + m.end())))
            break  # one per signal and sentence
    if any(x.signal == "closure_considered" for x in out):
        # "considering closing the crossing points": not (yet) a closure.
        out = [x for x in out if x.signal != "closure_declared"]
    return out
