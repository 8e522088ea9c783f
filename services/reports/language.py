"""Cheap language identification among the four packs: stopwords and letters.

Feeds sometimes send no language, ``und``, or the site's interface language
rather than the article's. A few hundred characters of function words and
diacritics tell en, pl, lv and lt apart reliably; anything else abstains.
"""

from __future__ import annotations

import regex

from services.reports.packs import LANGUAGES, load_pack

SAMPLE = 4000  # characters read; enough for a verdict, bounded for a 100 kB text
_WORD = regex.compile(r"\p{L}+")
MIN_SCORE = 3.0


def scores(text: str) -> dict[str, float]:
    """A score per language: stopword hits plus a bonus per distinctive letter."""
    sample = text[:SAMPLE]
    words = [w.lower() for w in _WORD.findall(sample)]
    out: dict[str, float] = {}
    for lang in LANGUAGES:
        pack = load_pack(lang)
        score = float(sum(1 for w in words if w in pack.stopwords))
        if pack.letters:
            score += 0.5 * sum(sample.count(ch) + sample.count(ch.upper()) for ch in pack.letters)
        out[lang] = score
    return out


def detect(text: str) -> str | None:
    """The most likely of :data:`LANGUAGES`, or None when the text gives too little."""
    s = scores(text)
    best = max(s, key=lambda k: s[k])
    ranked = sorted(s.values(), reverse=True)
    if ranked[0] < MIN_SCORE or ranked[0] < 1.5 * ranked[1]:
        return None
    return best


def choose(given: str | None, text: str) -> str | None:
    """The language to analyse ``text`` in: ``given`` unless the text clearly says otherwise.

    Returns None when no pack applies (say a Russian text): the analysis then
    abstains from figures rather than reading it with the wrong words.
    """
    base = (given or "").split("-")[0].lower() or None
    detected = detect(text)
    if detected is None:
        if base in LANGUAGES:
            return base
        return None
    if base in LANGUAGES and base != detected:
        s = scores(text)
        # Keep the feed's word when its own pack still fits the text well.
        if s[base] * 2 >= s[detected]:
            return base
    return detected
