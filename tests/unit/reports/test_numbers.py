"""Numbers: separators, scale abbreviations, and number words (num2words as the oracle)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from num2words import num2words

from services.reports.numbers import find_numbers
from services.reports.packs import load_pack


def values(lang: str, text: str) -> list[int]:
    return [n.value for n in find_numbers(load_pack(lang), text) if n.integer]


@pytest.mark.parametrize("lang", ["en", "pl", "lv", "lt"])
@settings(max_examples=150, deadline=None)
@given(n=st.integers(min_value=1, max_value=999_999))
def test_number_words_from_num2words_parse_back(lang: str, n: int) -> None:
    words = num2words(n, lang=lang)
    assert values(lang, words) == [n], words


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("en", "4,000 attempts", [4000]),
        ("en", "4 000 attempts", [4000]),
        ("en", "4\u202f000 attempts", [4000]),
        ("en", "1.5 million people", [1_500_000]),
        ("en", "five thousand soldiers", [5000]),
        ("pl", "1 tys. 995 prób", [1995]),
        ("pl", "ponad 13 tys. prób", [13000]),
        ("pl", "1,5 tys. osób", [1500]),
        ("pl", "pięciu obywateli", [5]),
        ("pl", "dwustu migrantów", [200]),
        ("lv", "divdesmit pieci", [25]),
        ("lv", "1 tūkst. 995 migranti", [1995]),
        ("lv", "deviņus pārkāpējus", [9]),
        ("lt", "penkiasdešimt", [50]),
        ("lt", "1 tūkst. 995 migrantai", [1995]),
        ("lt", "keturiasdešimt vienas užsienietis", [41]),
    ],
)
def test_separators_abbreviations_and_inflected_words(
    lang: str, text: str, expected: list[int]
) -> None:
    assert values(lang, text) == expected


@pytest.mark.parametrize("text", ["21.11.2025", "10:30", "(21.11)", "2021/1134", "2.5"])
def test_dates_times_identifiers_and_bare_decimals_are_not_counts(text: str) -> None:
    assert values("en", text) == []
