"""Numbers in text: digits with separators and scale words, and number words.

``4,000``, ``4 000``, ``1,5 tys.``, ``1 tys. 995`` and ``divdesmit pieci`` all
become integers. A decimal without a scale word (``2.5 km``) is not a count and
is returned with ``integer=False`` so the caller can drop it.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from services.reports.packs import Pack

# Thousands groups of exactly three digits; a leading group of 1-3 digits that is
# not itself the tail of a longer number, date or identifier.
# ASCII digits only: mathematical or Arabic-Indic digits never appear in these
# statements, and reading them would turn decoration into figures.
_DIGITS = regex.compile(
    r"(?<![\d\p{L}/\\#№-])(?<![\d][.,:])"
    r"([0-9]{1,3}(?:(?:,|\.|[ \u00a0\u202f\u2009])[0-9]{3})+(?![\d])|[0-9]+)"
    r"(?:([.,])([0-9]+))?"
    r"(?![\d/\\]|[.,:]\d)"
)
_GROUP_SEP = regex.compile(r"[,. \u00a0\u202f\u2009]")
_TAIL = regex.compile(r"\s+([0-9]{1,3})(?![\d.,]\d)")
_NEXT_WORD = regex.compile(r"\s+(\p{L}+)")


@dataclass(frozen=True, slots=True)
class Number:
    start: int
    end: int
    value: int
    words: bool  # written in words
    integer: bool  # False for a bare decimal such as 2.5
    plain_digits: str  # the digits as written, for year/ordinal checks ('' for words)


def _word_value(pack: Pack, tokens: list[str]) -> int | None:
    total = 0
    current = 0
    for tok in tokens:
        low = tok.lower()
        if low in pack.unit_words:
            current += pack.unit_words[low]
            continue
        if pack.hundred.match(low):
            current = current * 100 if 1 <= current <= 9 else current + 100
            continue
        for pattern, mult in pack.multipliers:
            if pattern.fullmatch(low):
                total += (current or 1) * mult
                current = 0
                break
        else:
            return None
    value = total + current
    return value if value > 0 else None


def find_numbers(pack: Pack, text: str) -> list[Number]:
    """Every number in ``text`` (a sentence), in order, not overlapping."""
    found: list[Number] = []
    for m in _DIGITS.finditer(text):
        if found and m.start() < found[-1].end:
            continue  # the "995" of "1 tys. 995" is already read
        head, sep, frac = m.group(1), m.group(2), m.group(3)
        end = m.end()
        integer = True
        grouped = bool(_GROUP_SEP.search(head))
        base = int(_GROUP_SEP.sub("", head))
        value = float(base)
        if sep and frac is not None:
            # 1,5 / 1.5: a decimal, a count only when a scale word follows.
            value = float(f"{base}.{frac}")
            integer = False
        rest = text[end:]
        for pattern, mult in pack.scale_after_digits:
            sm = pattern.match(rest)
            if sm:
                value *= mult
                end += sm.end()
                integer = value == int(value)
                # "1 tys. 995": the remainder after the scale word.
                tail = _TAIL.match(text, end)
                if tail and not grouped and mult == 1000:
                    value += int(tail.group(1))
                    end = tail.end()
                break
        else:
            wm = _NEXT_WORD.match(rest)
            for pattern, mult in pack.multipliers:
                if wm and pattern.fullmatch(wm.group(1)):
                    value *= mult
                    end += wm.end()
                    integer = value == int(value)
                    break
        found.append(
            Number(
                start=m.start(),
                end=end,
                value=int(value),
                words=False,
                integer=integer,
                plain_digits="" if grouped or sep else head,
            )
        )
    taken = [(n.start, n.end) for n in found]
    word_runs: list[Number] = []
    run: list[regex.Match[str]] = []

    def flush() -> None:
        if not run:
            return
        value = _word_value(pack, [w.group(0) for w in run])
        if value is not None:
            start, stop = run[0].start(), run[-1].end()
            if not any(a < stop and start < b for a, b in taken):
                word_runs.append(Number(start, stop, value, True, True, ""))
        run.clear()

    for wm in pack.number_word.finditer(text):
        if run and not pack.joiner.match(text[run[-1].end() : wm.start()]):
            flush()
        run.append(wm)
    flush()
    out = found + word_runs
    out.sort(key=lambda n: n.start)
    return out
