"""The analyser against the golden fixtures written by the team (en, pl, lv, lt)."""

from __future__ import annotations

import pytest

from tests.unit.reports.scoring import load, score

LANGS = ["en", "pl", "lv", "lt"]


@pytest.mark.parametrize("lang", LANGS)
def test_each_language_has_enough_golden_sentences_with_traps(lang: str) -> None:
    cases = load(lang)["cases"]
    assert len(cases) >= 40
    assert sum(1 for c in cases if c["set"] == "trap") >= 10


@pytest.mark.parametrize("lang", LANGS)
def test_official_statements_precision_and_recall(lang: str) -> None:
    s = score(lang)["official"]
    assert s.precision >= 0.95 and s.recall >= 0.90, "\n".join(s.misses)


@pytest.mark.parametrize("lang", LANGS)
def test_traps_never_give_an_invented_figure(lang: str) -> None:
    s = score(lang)["trap"]
    assert s.fp == 0, "\n".join(s.misses)


@pytest.mark.parametrize("lang", LANGS)
def test_press_and_ngo_notes_invent_nothing(lang: str) -> None:
    for name in ("press", "ngo"):
        s = score(lang)[name]
        assert s.precision >= 0.95, "\n".join(s.misses)


@pytest.mark.parametrize("lang", LANGS)
def test_signals_with_negation(lang: str) -> None:
    s = score(lang)["signals"]
    assert s.precision >= 0.95 and s.recall >= 0.90, "\n".join(s.misses)
