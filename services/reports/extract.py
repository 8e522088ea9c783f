"""Figures in a report's text: area, metric, value, qualifier, period, evidence.

The reading is shallow and per clause, in the manner of the EU's Europe Media
Monitor: a number counts only when what it counts (people, attempts, officers)
follows it and a metric word stands beside it. Dates, years, ordinals, unit
names, distances, identifiers, population sizes, people in a photo and the days
of a period phrase are refused before that. Anything unclear is dropped:
an invented figure is worse than a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import regex

from services.reports.numbers import Number, find_numbers
from services.reports.packs import Pack, PeriodRule
from services.reports.periods import UNKNOWN, Period, resolve
from services.reports.text import Sentence, clauses

METRIC_REACH = 90  # characters between a number and its metric word, at most
QUALIFIER_REACH = 40
MAX_FILLERS = 3
AREAS = ("LV", "LT", "PL", "EU-BY")
_SPACE = regex.compile(r"[\s\-\u2013]+")
_DOT_WORD = regex.compile(r"\.\s*(\p{L})")


@dataclass(frozen=True, slots=True)
class Figure:
    area: str
    metric: str
    value: int
    qualifier: str
    period: Period
    evidence: str
    span: tuple[int, int] | None
    source: str = "text"

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "metric": self.metric,
            "value": self.value,
            "qualifier": self.qualifier,
            "period": self.period.to_dict(),
            "evidence": self.evidence,
            "span": list(self.span) if self.span else None,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class _PeriodHit:
    start: int
    end: int
    rule: PeriodRule
    match: regex.Match[str]


def _period_hits(pack: Pack, s: str) -> list[_PeriodHit]:
    found = [
        _PeriodHit(m.start(), m.end(), rule, m)
        for rule in pack.periods
        for m in rule.pattern.finditer(s)
    ]
    # The longest phrase wins an overlap: "nuo 2021 m. rugpjūčio" over "2021 m.".
    found.sort(key=lambda h: h.start - h.end)
    hits: list[_PeriodHit] = []
    for h in found:
        if not any(o.start < h.end and h.start < o.end for o in hits):
            hits.append(h)
    hits.sort(key=lambda h: h.start)
    return hits


def _month_number(pack: Pack, name: str | None) -> int | None:
    if not name:
        return None
    low = name.lower()
    for stem, number in pack.month_numbers.items():
        if low.startswith(stem):
            return number
    return None


def _resolve_hit(pack: Pack, hit: _PeriodHit, published_at: datetime, area: str) -> Period:
    groups = hit.match.groupdict()
    days = hit.rule.days
    if hit.rule.anchor == "rolling_days_n":
        raw = groups.get("n")
        nums = find_numbers(pack, raw) if raw else []
        if len(nums) != 1 or not 1 <= nums[0].value <= 366:
            return Period(hit.rule.label if raw is None else "unknown", None, None)
        days = nums[0].value
        label = f"{days} days" if days not in (7,) else "week"
        if days == 1:
            label = "day"
        return resolve("rolling_days", label, published_at, area, days=days)
    year = groups.get("year")
    day = groups.get("day")
    return resolve(
        hit.rule.anchor,
        hit.rule.label,
        published_at,
        area,
        hours=hit.rule.hours,
        days=days,
        month=_month_number(pack, groups.get("month")),
        year=int(year) if year and year.isdigit() else None,
        day=int(day) if day and day.isdigit() else None,
    )


def _is_trap(pack: Pack, s: str, n: Number, clause_start: int) -> bool:
    before = s[max(clause_start, n.start - 30) : n.start]
    after = s[n.end : n.end + 40]
    if pack.before.search(before) or pack.months_before.search(before):
        return True
    if pack.after_number.match(after) or pack.units_after.match(after):
        return True
    if pack.months_after.match(after):
        return True
    if not n.words:
        # "19. novembrī", "3. brigāde": a dot then a lower-case word is an ordinal.
        ordinal = _DOT_WORD.match(after)
        if ordinal and ordinal.group(1).islower():
            return True
        # "the 19 Guards", "route 12": a capitalised word that is not what is counted.
        d = n.plain_digits
        if d and len(d) == 4 and 1900 <= int(d) <= 2100:
            return not pack.counted.match(after.lstrip())
        if d and len(d) > 1 and d.startswith("0"):
            return True
    return False


def _counts_something(pack: Pack, after: str) -> bool:
    """The number is followed (after a few adjectives) by what it counts."""
    pos = 0
    for _ in range(MAX_FILLERS + 1):
        gap = _SPACE.match(after, pos)
        if gap is None:
            return False
        pos = gap.end()
        if pack.counted.match(after, pos):
            return True
        filler = pack.filler.match(after, pos)
        if filler is None:
            return False
        pos = filler.end()
    return False


def _qualifier(pack: Pack, before: str) -> str:
    for name, pattern in pack.qualifiers:
        if pattern.search(before):
            return name
    return "exact"


def _nearest_metric(pack: Pack, s: str, n: Number, lo: int, hi: int) -> str | None:
    """The metric word nearest the number, inside its own stretch of the clause.

    Word order differs: "57 attempts were prevented" (en) puts it after,
    "aizturēja 4 personas" (lv) and "zatrzymano 5 osób" (pl) before. The
    nearer one wins; on a tie the one after, which is usually what is counted.
    """
    after = _first_metric(pack, s, n.end, min(hi, n.end + METRIC_REACH))
    before = _last_metric(pack, s, max(lo, n.start - METRIC_REACH), n.start)
    if after is None:
        return before[1] if before else None
    if before is None or after[0] - n.end <= n.start - before[0]:
        return after[1]
    return before[1]


def _first_metric(pack: Pack, s: str, lo: int, hi: int) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for name, pattern in pack.metrics:
        m = pattern.search(s, lo, hi)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    return best


def _last_metric(pack: Pack, s: str, lo: int, hi: int) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for name, pattern in pack.metrics:
        for m in pattern.finditer(s, lo, hi):
            if best is None or m.end() > best[0]:
                best = (m.end(), name)
    return best


def clause_areas(pack: Pack, s: str, default: str) -> list[tuple[int, int, str]]:
    """(start, end, area) per clause; a clause naming no country keeps the one before."""
    out = []
    area = default
    for lo, hi in clauses(pack, s):
        found: tuple[int, str] | None = None
        for name, pattern in pack.countries:
            m = pattern.search(s, lo, hi)
            # The whole-border phrases name countries too: they win over a single one.
            if m and (
                found is None or name == "EU-BY" or (m.start() < found[0] and found[1] != "EU-BY")
            ):
                found = (m.start(), name)
        if found:
            area = found[1]
        out.append((lo, hi, area))
    return out


def sentence_figures(
    pack: Pack, sent: Sentence, country: str, published_at: datetime
) -> list[Figure]:
    s = sent.text
    numbers = find_numbers(pack, s)
    nones = [(metric, m) for metric, p in pack.none for m in p.finditer(s)]
    if not numbers and not nones:
        return []
    periods = _period_hits(pack, s)
    areas = clause_areas(pack, s, country if country in AREAS else "EU-BY")

    def period_for(pos: int, area: str) -> Period:
        if not periods:
            return UNKNOWN
        # "In total" / "łącznie" is weak beside a named period ("over the weekend ...
        # in total 400"): a cumulative phrase wins only when it names its start.
        named = [
            h for h in periods if h.rule.anchor != "cumulative" or h.match.groupdict().get("year")
        ]
        hit = min(named or periods, key=lambda h: min(abs(h.start - pos), abs(h.end - pos)))
        return _resolve_hit(pack, hit, published_at, area)

    out: list[Figure] = []
    for lo, hi, area in areas:
        if pack.clause_trap.search(s, lo, hi):
            continue
        in_clause = [n for n in numbers if lo <= n.start < hi]
        for i, n in enumerate(in_clause):
            if not n.integer or n.value > 1_000_000:
                continue
            if any(h.start <= n.start < h.end for h in periods):
                continue  # "over the past three days": the three is the period's
            if _is_trap(pack, s, n, lo):
                continue
            if not _counts_something(pack, s[n.end : min(hi, n.end + 80)]):
                continue
            seg_hi = in_clause[i + 1].start if i + 1 < len(in_clause) else hi
            seg_lo = in_clause[i - 1].end if i > 0 else lo
            metric = _nearest_metric(pack, s, n, seg_lo, seg_hi)
            if metric is None:
                continue
            qualifier = _qualifier(pack, s[max(lo, n.start - QUALIFIER_REACH) : n.start])
            out.append(
                Figure(
                    area=area,
                    metric=metric,
                    value=n.value,
                    qualifier=qualifier,
                    period=period_for(n.start, area),
                    evidence=s,
                    span=(sent.start + n.start, sent.start + n.end),
                )
            )
        for metric, m in nones:
            if lo <= m.start() < hi:
                out.append(
                    Figure(
                        area=area,
                        metric=metric,
                        value=0,
                        qualifier="none",
                        period=period_for(m.start(), area),
                        evidence=s,
                        span=(sent.start + m.start(), sent.start + m.end()),
                    )
                )
    return out
