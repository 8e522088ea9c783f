"""The analysis of one report: language, figures and signals.

Plain Python, no Faust or FastAPI: the aggregator's agent calls
:func:`analyse` on each report event. Time is bounded: the text is at most
100 kB, sentences longer than 1,000 characters are skipped, and every pattern
is linear in the sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.reports.discrepancy import not_comparable
from services.reports.extract import AREAS, Figure, sentence_figures
from services.reports.language import choose
from services.reports.packs import LANGUAGES, load_pack
from services.reports.periods import Period
from services.reports.signals import Signal, sentence_signals
from services.reports.text import normalise, sentences

# Bump when a rule pack or the reading changes, so stored analyses can be told apart.
EXTRACTOR = "bw-reports/1.1.0"
MAX_TEXT = 100_000
MAX_FIGURES = 64
MAX_SIGNALS = 64
KIND_METRICS = (
    "detection",
    "crossing_attempt",
    "apprehension",
    "incident",
    "military_activity",
    "humanitarian",
)


@dataclass(frozen=True, slots=True)
class Analysis:
    language: str | None
    figures: list[Figure] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    extractor: str = EXTRACTOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "figures": [f.to_dict() for f in self.figures],
            "signals": [s.to_dict() for s in self.signals],
            "language": self.language,
            "extractor": self.extractor,
        }


def _feed_label(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "unknown"
    span = end - start
    if abs(span - timedelta(days=1)) <= timedelta(hours=1):
        return "day"
    if abs(span - timedelta(days=7)) <= timedelta(hours=1):
        return "week"
    if span >= timedelta(days=1) and span % timedelta(days=1) <= timedelta(hours=1):
        return f"{round(span / timedelta(days=1))} days"
    return "unknown"


def feed_figure(raw: dict[str, Any], country: str) -> Figure:
    """A figure the feed supplied (a ``ReportFigure`` as a dict): it wins over the text."""
    section = raw.get("section_id")
    area = section.split("-")[0] if isinstance(section, str) else country
    start = raw.get("period_start")
    end = raw.get("period_end")
    start_dt = datetime.fromisoformat(start) if isinstance(start, str) else start
    end_dt = datetime.fromisoformat(end) if isinstance(end, str) else end
    return Figure(
        area=area if area in AREAS else country,
        metric=str(raw["kind"]),
        value=int(raw["count"]),
        qualifier="exact",
        period=Period(_feed_label(start_dt, end_dt), start_dt, end_dt),
        evidence="",
        span=None,
        source="feed",
    )


def analyse(
    text: str,
    *,
    country: str,
    published_at: datetime,
    language: str | None = None,
    feed_figures: list[dict[str, Any]] | None = None,
) -> Analysis:
    """Figures and signals of one report. Never raises on odd text: it abstains."""
    if published_at.tzinfo is None:
        raise ValueError("published_at: needs a time zone offset")
    text = normalise(text[:MAX_TEXT])
    lang = choose(language, text) if text.strip() else (language or "").split("-")[0] or None
    figures = [feed_figure(f, country) for f in feed_figures or []]
    signals: list[Signal] = []
    if lang in LANGUAGES and text.strip():
        pack = load_pack(lang)
        fed = {(f.area, f.metric) for f in figures}
        seen: set[tuple[str, str, int, str]] = set()
        for sent in sentences(pack, text):
            for fig in sentence_figures(pack, sent, country, published_at):
                key = (fig.area, fig.metric, fig.value, fig.period.label)
                # The feed's own figures win: the text's figure for that metric is not added.
                if key in seen or (fig.area, fig.metric) in fed or len(figures) >= MAX_FIGURES:
                    continue
                seen.add(key)
                figures.append(fig)
            if len(signals) < MAX_SIGNALS:
                signals.extend(sentence_signals(pack, sent, country))
        signals = _dedupe(signals)[:MAX_SIGNALS]
    return Analysis(language=lang, figures=figures, signals=signals)


def _dedupe(signals: list[Signal]) -> list[Signal]:
    seen: set[tuple[str, str]] = set()
    out = []
    for s in signals:
        if (s.signal, s.area) not in seen:
            seen.add((s.signal, s.area))
            out.append(s)
    return out


def analysis_message(report: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The ``ReportAnalysis`` message of one decoded ``ReportEvent`` dict.

    Raises KeyError/ValueError/TypeError for a record that is not a report event.
    """
    result = analyse(
        report["text"],
        country=report["country"],
        published_at=datetime.fromisoformat(report["published_at"]),
        language=report.get("language"),
        feed_figures=report.get("figures") or [],
    )
    out = {
        "schema_version": 1,
        "report_id": report["report_id"],
        "country": report["country"],
        "published_at": report["published_at"],
        "source_type": report["source"]["type"],
        "analysed_at": (now or datetime.now(UTC)).isoformat(),
        **result.to_dict(),
    }
    # Said once, where the operator reads the figure: a month, a year or a cumulative
    # total is never set against the field counts, which reach back 7 days.
    for figure in out["figures"]:
        figure["not_compared"] = not_comparable(figure)
    return out
