"""Score the analyser against golden fixtures: figure precision/recall, traps, signals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from services.reports import analyse

FIXTURES = Path(__file__).parent / "fixtures"


def _expected(item: str) -> tuple[str, str, int, str, str]:
    area, metric, value, qualifier, *period = item.split()
    return (area, metric, int(value), qualifier, " ".join(period))


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


HOLDOUT = Path(__file__).parent / "holdout"


def load(language: str, folder: Path = FIXTURES) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((folder / f"{language}.yaml").read_text("utf-8"))
    return data


def score(language: str, folder: Path = FIXTURES) -> dict[str, Score]:
    """Scores per fixture set, plus ``signals`` over every case that lists them."""
    data = load(language, folder)
    out: dict[str, Score] = {}
    signals = out.setdefault("signals", Score())
    for case in data["cases"]:
        country = case.get("country", data["country"])
        published = datetime.fromisoformat(case.get("published_at", data["published_at"]))
        result = analyse(
            case["text"], country=country, published_at=published, language=data["language"]
        )
        got = {(f.area, f.metric, f.value, f.qualifier, f.period.label) for f in result.figures}
        want = {_expected(x) for x in case["figures"]}
        s = out.setdefault(case["set"], Score())
        s.tp += len(got & want)
        s.fp += len(got - want)
        s.fn += len(want - got)
        for g in got - want:
            s.misses.append(f"invented {g} in: {case['text']}")
        for w in want - got:
            s.misses.append(f"missed {w} in: {case['text']}")
        if "signals" in case:
            got_s = {x.signal for x in result.signals}
            want_s = set(case["signals"])
            signals.tp += len(got_s & want_s)
            signals.fp += len(got_s - want_s)
            signals.fn += len(want_s - got_s)
            for g in got_s - want_s:
                signals.misses.append(f"invented signal {g} in: {case['text']}")
            for w in want_s - got_s:
                signals.misses.append(f"missed signal {w} in: {case['text']}")
    return out


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    # --holdout: sentences written after the packs were frozen and never tuned on
    # (tests/unit/reports/holdout/<lang>.yaml; move them into fixtures/ once used).
    folder = HOLDOUT if "--holdout" in args else FIXTURES
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no held-out sentences yet; write some before tuning")
    langs = [a for a in args if not a.startswith("--")]
    for lang in langs or ["en", "pl", "lv", "lt"]:
        for name, s in score(lang, folder).items():
            print(
                f"{lang} {name:8} P={s.precision:.3f} R={s.recall:.3f} tp={s.tp} fp={s.fp} fn={s.fn}"
            )
            for m in s.misses:
                print("   ", m)
