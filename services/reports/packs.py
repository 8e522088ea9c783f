"""Per-language rule packs: data files under ``packs/`` compiled once into regexes.

A pack is plain data (``packs/<lang>.yaml``) so a linguist can correct a word
form without touching the code; this module only validates and compiles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import regex
import yaml

LANGUAGES: tuple[str, ...] = ("en", "pl", "lv", "lt")
FLAGS = regex.IGNORECASE | regex.UNICODE | regex.V0

QUALIFIERS = ("more_than", "about", "at_most")
METRICS = (
    "detection",
    "crossing_attempt",
    "apprehension",
    "incident",
    "military_activity",
    "humanitarian",
    "personnel_deployed",
)
SIGNALS = (
    "military_activity",
    "incident",
    "disinformation",
    "intelligence_activity",
    "humanitarian_concern",
    "hybrid_threat",
    "state_of_emergency",
    "closure_considered",
    "closure_declared",
    "reinforcement",
)
ANCHORS = (
    "rolling_hours",
    "yesterday",
    "today",
    "weekend",
    "rolling_days",
    "rolling_days_n",
    "month",
    "year",
    "cumulative",
    "date",
)


class PackError(ValueError):
    """A rule pack that cannot be used, with the file and field that are wrong."""


@dataclass(frozen=True, slots=True)
class PeriodRule:
    anchor: str
    label: str
    pattern: regex.Pattern[str]
    hours: int = 0
    days: int = 0


@dataclass(frozen=True, slots=True)
class Pack:
    language: str
    stopwords: frozenset[str]
    letters: str
    abbreviations: frozenset[str]
    unit_words: dict[str, int]  # lower-case word form -> value (< 1000, additive)
    number_word: regex.Pattern[str]  # any number word, whole word
    hundred: regex.Pattern[str]
    multipliers: tuple[tuple[regex.Pattern[str], int], ...]
    joiner: regex.Pattern[str]
    scale_after_digits: tuple[tuple[regex.Pattern[str], int], ...]
    decimal_comma: bool
    qualifiers: tuple[tuple[str, regex.Pattern[str]], ...]  # anchored at the end of the text before
    counted: regex.Pattern[str]  # anchored at start
    filler: regex.Pattern[str]  # anchored at start
    metrics: tuple[tuple[str, regex.Pattern[str]], ...]
    none: tuple[tuple[str, regex.Pattern[str]], ...]
    periods: tuple[PeriodRule, ...]
    months: regex.Pattern[str]
    months_after: regex.Pattern[str]  # anchored at start: "22 November", "19. novembrī"
    months_before: regex.Pattern[str]  # anchored at end: "November 22", "lapkričio 22"
    month_numbers: dict[str, int]  # lower-case stem -> 1..12
    after_number: regex.Pattern[str]  # anchored at start (right after the digits)
    units_after: regex.Pattern[str]  # anchored at start
    before: regex.Pattern[str]  # anchored at end
    clause_trap: regex.Pattern[str]
    countries: tuple[tuple[str, regex.Pattern[str]], ...]
    clause_split: regex.Pattern[str]
    negation: regex.Pattern[str]
    signals: tuple[tuple[str, regex.Pattern[str]], ...]


def _alt(patterns: list[str]) -> str:
    # Longest first so "more than" wins over "more".
    return "|".join(f"(?:{p})" for p in sorted(patterns, key=len, reverse=True))


def _compile(where: str, pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(pattern, FLAGS)
    except regex.error as exc:
        raise PackError(f"{where}: bad pattern {pattern!r}: {exc}") from exc


def _words(where: str, patterns: list[str]) -> regex.Pattern[str]:
    return _compile(where, rf"\b(?:{_alt(patterns)})\b")


def _need(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise PackError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise PackError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, list):
        for i, item in enumerate(value):
            # YAML reads a bare no/on/yes as a boolean: say so instead of matching "False".
            if isinstance(item, bool):
                raise PackError(f"{where}.{key}[{i}]: {item!r} is a YAML boolean; quote the word")
    return value


def build_pack(data: dict[str, Any], where: str) -> Pack:
    """Validate and compile one pack's data (``where`` names it in errors)."""
    lang = _need(data, "language", str, where)
    num = _need(data, "numbers", dict, where)
    units_raw = _need(num, "units", dict, f"{where}.numbers")
    unit_words: dict[str, int] = {}
    unit_patterns: list[str] = []
    for forms, value in units_raw.items():
        if not isinstance(value, int) or not 0 < value < 1000:
            raise PackError(f"{where}.numbers.units.{forms}: value must be an integer 1..999")
        for form in str(forms).split("|"):
            unit_words[form.lower()] = value
            unit_patterns.append(regex.escape(form))
    hundred = str(_need(num, "hundred", str, f"{where}.numbers"))
    mults = _need(num, "multipliers", dict, f"{where}.numbers")
    multipliers = tuple(
        (_words(f"{where}.numbers.multipliers", [p]), int(v)) for p, v in mults.items()
    )
    scale = _need(num, "scale_after_digits", dict, f"{where}.numbers")
    scale_after = tuple(
        (_compile(f"{where}.numbers.scale_after_digits", rf"\s*(?:{p})(?!\p{{L}})"), int(v))
        for p, v in scale.items()
    )
    all_words = unit_patterns + [hundred] + [str(p) for p in mults]
    qual = _need(data, "qualifiers", dict, where)
    qualifiers = []
    for q in QUALIFIERS:
        pats = _need(qual, q, list, f"{where}.qualifiers")
        qualifiers.append(
            (q, _compile(f"{where}.qualifiers.{q}", rf"(?<!\p{{L}})(?:{_alt(pats)})\s*$"))
        )
    metrics_raw = _need(data, "metrics", dict, where)
    metrics = []
    for name, pats in metrics_raw.items():
        if name not in METRICS:
            raise PackError(f"{where}.metrics.{name}: unknown metric (one of {', '.join(METRICS)})")
        metrics.append((name, _words(f"{where}.metrics.{name}", list(pats))))
    none = []
    for i, item in enumerate(_need(data, "none", list, where)):
        if item.get("metric") not in METRICS:
            raise PackError(f"{where}.none[{i}].metric: unknown metric {item.get('metric')!r}")
        none.append((item["metric"], _compile(f"{where}.none[{i}]", item["pattern"])))
    periods = []
    for i, item in enumerate(_need(data, "periods", list, where)):
        anchor = item.get("anchor")
        if anchor not in ANCHORS:
            raise PackError(f"{where}.periods[{i}].anchor: unknown anchor {anchor!r}")
        label = (
            item.get("label")
            or {
                "rolling_hours": "day",
                "yesterday": "day",
                "today": "day",
                "weekend": "weekend",
                "rolling_days": "week",
                "rolling_days_n": "N days",
                "month": "month",
                "year": "year",
                "cumulative": "cumulative",
                "date": "day",
            }[anchor]
        )
        periods.append(
            PeriodRule(
                anchor=anchor,
                label=label,
                pattern=_compile(
                    f"{where}.periods[{i}]", rf"(?<!\p{{L}})(?:{item['pattern']})(?!\p{{L}})"
                ),
                hours=int(item.get("hours", 0)),
                days=int(item.get("days", 0)),
            )
        )
    dates = _need(data, "dates", dict, where)
    month_names = _need(dates, "month_names", list, f"{where}.dates")
    if len(month_names) != 12:
        raise PackError(f"{where}.dates.month_names: expected 12 month stems")
    traps = _need(data, "traps", dict, where)
    countries = tuple(
        (
            area,
            _compile(f"{where}.countries.{area}", rf"(?<!\p{{L}})(?:{_alt(list(p))})(?!\p{{L}})"),
        )
        for area, p in _need(data, "countries", dict, where).items()
    )
    for area, _ in countries:
        if area not in ("LV", "LT", "PL", "EU-BY"):
            raise PackError(f"{where}.countries.{area}: area must be LV, LT, PL or EU-BY")
    signals = []
    for name, pats in _need(data, "signals", dict, where).items():
        if name not in SIGNALS:
            raise PackError(f"{where}.signals.{name}: unknown signal (one of {', '.join(SIGNALS)})")
        signals.append(
            (
                name,
                _compile(
                    f"{where}.signals.{name}", rf"(?<!\p{{L}})(?:{_alt(list(pats))})(?!\p{{L}})"
                ),
            )
        )
    neg = list(_need(data, "negation", list, where))
    excl = list(data.get("negation_exclude") or [])
    neg_pattern = rf"(?<!\p{{L}})(?:{_alt(neg)})(?!\p{{L}})"
    if excl:
        neg_pattern = rf"(?<!\p{{L}})(?!(?:{_alt(excl)}))(?:{_alt(neg)})"
    return Pack(
        language=lang,
        stopwords=frozenset(w.lower() for w in _need(data, "stopwords", list, where)),
        letters=str(data.get("letters") or ""),
        abbreviations=frozenset(a.lower() for a in _need(data, "abbreviations", list, where)),
        unit_words=unit_words,
        number_word=_words(f"{where}.numbers", all_words),
        hundred=_compile(f"{where}.numbers.hundred", rf"^(?:{hundred})$"),
        multipliers=multipliers,
        joiner=_compile(f"{where}.numbers.joiners", rf"^(?:{_need(num, 'joiners', str, where)})$"),
        scale_after_digits=scale_after,
        decimal_comma=bool(num.get("decimal_comma", True)),
        qualifiers=tuple(qualifiers),
        counted=_compile(
            f"{where}.counted", rf"(?:{_alt(_need(data, 'counted', list, where))})(?!\p{{L}})"
        ),
        filler=_compile(
            f"{where}.filler", rf"(?:{_alt(_need(data, 'filler', list, where))})(?!\p{{L}})"
        ),
        metrics=tuple(metrics),
        none=tuple(none),
        periods=tuple(periods),
        months=_compile(
            f"{where}.dates.months",
            rf"(?<!\p{{L}})(?:{_need(dates, 'months', str, where)})(?!\p{{L}})",
        ),
        months_after=_compile(
            f"{where}.dates.months",
            rf"\s*\.?\s*(?:{_need(dates, 'months', str, where)})(?!\p{{L}})",
        ),
        months_before=_compile(
            f"{where}.dates.months",
            rf"(?<!\p{{L}})(?:{_need(dates, 'months', str, where)})\.?,?\s*$",
        ),
        month_numbers={str(m).lower(): i + 1 for i, m in enumerate(month_names)},
        after_number=_compile(
            f"{where}.dates.after_number",
            rf"(?:{_alt(list(dates.get('after_number') or ['(?!)']))})(?!\p{{L}})",
        ),
        units_after=_compile(
            f"{where}.traps.units_after",
            rf"\s*(?:{_alt(_need(traps, 'units_after', list, where))})(?![\p{{L}}\d])",
        ),
        before=_compile(
            f"{where}.traps.before",
            rf"(?<!\p{{L}})(?:{_alt(_need(traps, 'before', list, where))})\s*$",
        ),
        clause_trap=_compile(
            f"{where}.traps.clause",
            rf"(?<!\p{{L}})(?:{_alt(_need(traps, 'clause', list, where))})(?!\p{{L}})",
        ),
        countries=countries,
        clause_split=_compile(f"{where}.clause_split", _need(data, "clause_split", str, where)),
        negation=_compile(f"{where}.negation", neg_pattern),
        signals=tuple(signals),
    )


@cache
def load_pack(language: str) -> Pack:
    """The compiled pack for ``language`` (one of :data:`LANGUAGES`)."""
    if language not in LANGUAGES:
        raise PackError(f"language {language!r}: no rule pack (one of {', '.join(LANGUAGES)})")
    name = f"{language}.yaml"
    text = resources.files("services.reports").joinpath("packs", name).read_text("utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise PackError(f"packs/{name}: expected a mapping at the top")
    return build_pack(data, f"packs/{name}")
