"""The whole analysis: periods, areas, spans, feed figures, language, and bad input."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reports import EXTRACTOR, analyse
from services.reports.language import choose, detect
from services.reports.packs import PackError, build_pack, load_pack

PUB = datetime.fromisoformat("2026-11-23T09:00:00+02:00")  # Monday, Riga
LV_DAILY = "Pēdējās diennakts laikā nelikumīgi šķērsot robežu atturētas 57 personas."


def test_a_daily_statement_gives_its_figure_with_evidence_and_span() -> None:
    a = analyse(LV_DAILY, country="LV", published_at=PUB, language="lv")
    (fig,) = a.figures
    assert (fig.area, fig.metric, fig.value, fig.qualifier) == (
        "LV",
        "crossing_attempt",
        57,
        "exact",
    )
    assert fig.evidence == LV_DAILY
    assert fig.span is not None and LV_DAILY[fig.span[0] : fig.span[1]] == "57"
    assert a.to_dict()["extractor"] == EXTRACTOR and a.language == "lv"


def test_weekend_is_saturday_to_monday_in_the_country_time_zone() -> None:
    text = "W miniony weekend odnotowano 450 prób nielegalnego przekroczenia granicy."
    pub = datetime.fromisoformat("2026-11-23T07:00:00+00:00")  # 08:00 in Warsaw
    (fig,) = analyse(text, country="PL", published_at=pub, language="pl").figures
    assert fig.period.label == "weekend"
    assert fig.period.start == datetime.fromisoformat("2026-11-21T00:00:00+01:00")
    assert fig.period.end == datetime.fromisoformat("2026-11-23T00:00:00+01:00")


def test_a_period_never_ends_after_publication() -> None:
    # Published on a Sunday: the weekend so far, not the whole of it.
    pub = datetime.fromisoformat("2026-11-22T12:00:00+02:00")
    text = "Over the weekend, border guards prevented 457 attempts to cross the border."
    (fig,) = analyse(text, country="LV", published_at=pub, language="en").figures
    assert fig.period.end == pub
    text = "Since the start of the year, 4,000 attempts to cross the border were prevented."
    (fig,) = analyse(text, country="LV", published_at=pub, language="en").figures
    assert fig.period.end == pub and fig.period.start == datetime.fromisoformat(
        "2026-01-01T00:00:00+02:00"
    )


def test_n_days_resolves_the_days_and_never_counts_them() -> None:
    text = "Per pastarąsias tris paras neužfiksuota nė vieno neteisėto sienos kirtimo bandymo."
    (fig,) = analyse(text, country="LT", published_at=PUB, language="lt").figures
    assert (fig.value, fig.qualifier, fig.period.label) == (0, "none", "3 days")
    assert fig.period.end is not None and fig.period.start is not None
    assert fig.period.end - fig.period.start == timedelta(days=3)


def test_area_is_decided_per_clause() -> None:
    text = (
        "Per parą Latvijoje neįleisti 80 migrantų, o Lenkijoje užfiksuoti 210 bandymų kirsti sieną."
    )
    a = analyse(text, country="LT", published_at=PUB, language="lt")
    assert [(f.area, f.value) for f in a.figures] == [("LV", 80), ("PL", 210)]


def test_feed_figures_take_precedence_and_are_marked() -> None:
    feed = [{"kind": "crossing_attempt", "count": 60, "section_id": "LV-KRA"}]
    a = analyse(LV_DAILY, country="LV", published_at=PUB, language="lv", feed_figures=feed)
    assert [(f.source, f.value) for f in a.figures] == [("feed", 60)]
    assert a.to_dict()["figures"][0]["source"] == "feed"


def test_language_missing_or_wrong_is_detected() -> None:
    assert detect(LV_DAILY) == "lv"
    assert choose("en", LV_DAILY) == "lv"
    assert (
        choose(None, "Wczoraj doszło do 120 prób nielegalnego przekroczenia granicy z Białorusi.")
        == "pl"
    )
    assert choose("lt", "Per parą pasieniečiai apgręžė 25 neteisėtus migrantus.") == "lt"
    a = analyse(LV_DAILY, country="LV", published_at=PUB, language="en")
    assert a.language == "lv" and [f.value for f in a.figures] == [57]


def test_a_text_in_no_known_language_abstains() -> None:
    text = "За последние сутки пограничники предотвратили 57 попыток пересечения границы."  # noqa: RUF001
    a = analyse(text, country="LV", published_at=PUB, language="ru")
    assert a.figures == [] and a.language is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "<html><body><table>"
        + "<tr><td>57</td><td>2025</td></tr>" * 2000
        + "</table></body></html>",
        "\u200b\u202e\ufeff\x00\x07 \ud800 \ufdfd \U0001d7d3\U0001d7d5 attempts \u0665\u0667 attempts \u2075\u2077",
        "7" * 100_000,
        ("1 " * 50_000),
        "attempts " * 11_000,
        "<script>var n = 57; // 57 attempts prevented</script>",
    ],
)
def test_bad_input_gives_an_analysis_with_no_figures_and_no_crash(text: str) -> None:
    a = analyse(text, country="LV", published_at=PUB, language="en")
    assert a.figures == []


def test_html_markup_keeps_spans_on_the_original_text() -> None:
    text = "<p>In the last 24 hours, <b>57</b> attempts to cross the border were prevented.</p>"
    (fig,) = analyse(text, country="LV", published_at=PUB, language="en").figures
    assert fig.span is not None and text[fig.span[0] : fig.span[1]] == "57"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_analysed_without_error(text: str) -> None:
    analyse(text, country="PL", published_at=PUB, language="pl")


def test_published_at_needs_an_offset() -> None:
    with pytest.raises(ValueError, match="published_at"):
        analyse("x", country="LV", published_at=datetime(2026, 11, 23), language="en")


def test_a_broken_pack_names_the_field() -> None:
    from importlib import resources

    import yaml

    data = yaml.safe_load(
        resources.files("services.reports").joinpath("packs", "en.yaml").read_text("utf-8")
    )
    data["metrics"]["crossings"] = ["x"]
    with pytest.raises(PackError, match=r"metrics\.crossings: unknown metric"):
        build_pack(data, "packs/en.yaml")
    assert load_pack("en").language == "en"


@pytest.mark.parametrize(
    ("language", "country", "text"),
    [
        ("en", "LV", "On 21 November, border guards prevented 73 attempts to cross the border."),
        ("pl", "PL", "21 listopada odnotowano 73 próby nielegalnego przekroczenia granicy."),
        ("lv", "LV", "21. novembrī novērsti 73 nelikumīgas robežšķērsošanas mēģinājumi."),
        ("lt", "LT", "Lapkričio 21 d. pasieniečiai neįleido 73 neteisėtų migrantų."),
    ],
)
def test_a_named_date_is_that_calendar_day_in_the_country_time_zone(
    language: str, country: str, text: str
) -> None:
    (fig,) = analyse(text, country=country, published_at=PUB, language=language).figures
    zone = {"PL": "+01:00"}.get(country, "+02:00")
    assert (fig.value, fig.period.label) == (73, "day")
    assert fig.period.start == datetime.fromisoformat(f"2026-11-21T00:00:00{zone}")
    assert fig.period.end == datetime.fromisoformat(f"2026-11-22T00:00:00{zone}")


def test_a_date_still_to_come_is_last_years_and_until_a_date_is_no_period() -> None:
    text = "On 15 December, border guards prevented 73 attempts to cross the border."
    (fig,) = analyse(text, country="LV", published_at=PUB, language="en").figures
    assert fig.period.start == datetime.fromisoformat("2025-12-15T00:00:00+02:00")
    for language, until in (
        ("en", "Until 31 December, 500 additional soldiers will be deployed on the border."),
        ("pl", "Do 31 grudnia na granicy służy 2 tys. żołnierzy."),
    ):
        found = analyse(until, country="PL", published_at=PUB, language=language).figures
        assert all(f.period.label != "day" for f in found), found
