"""Report analysis speed: milliseconds per report for 1 kB, 10 kB and 100 kB texts.

Run: ``python -m bench.reports`` (about 15 s). The texts are the golden fixture
sentences of each language repeated to size, so every sentence is read in full
(numbers, periods, metrics, signals); the target is at most 20 ms for 10 kB.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from pathlib import Path

import yaml

from services.reports import analyse

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "unit" / "reports" / "fixtures"
SIZES = (1_000, 10_000, 100_000)
PUB = datetime.fromisoformat("2026-11-23T09:00:00+02:00")


def text_of(lang: str, size: int) -> str:
    data = yaml.safe_load((FIXTURES / f"{lang}.yaml").read_text("utf-8"))
    sentences = [c["text"] for c in data["cases"]]
    out: list[str] = []
    n = 0
    i = 0
    while n < size:
        s = sentences[i % len(sentences)]
        out.append(s)
        n += len(s.encode("utf-8")) + 1
        i += 1
    return " ".join(out).encode("utf-8")[:size].decode("utf-8", "ignore")


def main() -> None:
    print(f"{'lang':4} {'size':>7} {'runs':>5} {'median ms':>10} {'p95 ms':>8} {'figures':>8}")
    for lang in ("en", "pl", "lv", "lt"):
        for size in SIZES:
            text = text_of(lang, size)
            runs = max(5, 2_000_000 // size)
            analyse(text, country="LV", published_at=PUB, language=lang)  # warm the packs
            times = []
            figures = 0
            for _ in range(runs):
                t0 = time.perf_counter()
                a = analyse(text, country="LV", published_at=PUB, language=lang)
                times.append((time.perf_counter() - t0) * 1000)
                figures = len(a.figures)
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            print(
                f"{lang:4} {size:>7} {runs:>5} {statistics.median(times):>10.2f} {p95:>8.2f} {figures:>8}"
            )


if __name__ == "__main__":
    main()
