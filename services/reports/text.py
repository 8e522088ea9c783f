"""Text preparation: markup blanked out, sentences and clauses found.

Offsets are kept: markup and entities are replaced by spaces of the same length,
so a span found in the cleaned text points at the same characters in the text
the analysis was given (after Unicode NFC normalisation).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import regex

from services.reports.packs import Pack

MAX_SENTENCE = 1000  # longer "sentences" (tables, run-on markup) are not read

_TAG = regex.compile(
    r"<(?:script|style)\b[^>]{0,2000}>.{0,100000}?</(?:script|style)\s*>|<[^<>]{0,2000}>",
    regex.S | regex.I,
)
_ENTITY = regex.compile(r"&(?:[a-zA-Z]{2,10}|#\d{1,7}|#x[0-9a-fA-F]{1,6});")
# Control and format characters (zero-width spaces, bidi marks) read as spaces.
_ODD = regex.compile(r"[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}--[\n\t]]", regex.V1)
_SPACES = regex.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]")
_LAST_WORD = regex.compile(r"(\p{L}[\p{L}.]*)\.*$")
_SENTENCE_END = regex.compile(r"(?:[.!?…]+[\"'”»)]*)(?=\s+|$)|\n\s*\n|\n(?=\s*[-•*\d\p{Lu}])")


@dataclass(frozen=True, slots=True)
class Sentence:
    start: int
    end: int
    text: str


def normalise(text: str) -> str:
    """NFC, then markup, entities and odd characters blanked with equal-length spaces."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if "<" in text:
        text = _TAG.sub(lambda m: " " * len(m.group(0)), text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: " " * len(m.group(0)), text)
    text = _ODD.sub(" ", text)
    # Narrow and no-break spaces act as thousands separators: keep them as one space.
    return _SPACES.sub(" ", text)


def sentences(pack: Pack, text: str) -> Iterator[Sentence]:
    """Sentences of ``text`` with their offsets; abbreviations ("tys.", "ok.") do not end one."""
    start = 0
    n = len(text)
    for m in _SENTENCE_END.finditer(text):
        cut = m.end()
        if m.group(0).startswith("."):
            word = _LAST_WORD.search(text, max(start, m.start() - 12), m.start())
            if word and word.group(1).lower() in pack.abbreviations:
                continue
            # "57." followed by a lower-case word is an ordinal or a date ("19. novembrī").
            following = text[cut : cut + 3].lstrip()
            if following[:1].islower():
                continue
        yield from _emit(text, start, cut)
        start = cut
    if start < n:
        yield from _emit(text, start, n)


def _emit(text: str, start: int, end: int) -> Iterator[Sentence]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end and end - start <= MAX_SENTENCE:
        yield Sentence(start, end, text[start:end])


def clauses(pack: Pack, sentence: str) -> list[tuple[int, int]]:
    """Clause boundaries inside one sentence (offsets relative to the sentence)."""
    out = []
    start = 0
    for m in pack.clause_split.finditer(sentence):
        if m.start() > start:
            out.append((start, m.start()))
        start = m.end()
    out.append((start, len(sentence)))
    return out
