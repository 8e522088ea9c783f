"""The section catalogue: the shipped file loads; a bad operator file stops start-up
with a message that says where (file, line, entry) and what (field, reason)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.catalogue import Catalogue
from services.common.errors import ConfigError
from tests.unit.factories import CONFIG_DIR

ENTRY_LINES = 7  # lines per entry written by _entry


def _entry(
    ident: str,
    *,
    country: str | None = None,
    lat: float = 55.85,
    polyline: str = "[[55.72, 27.0], [55.80, 27.12]]",
) -> str:
    country = country or ident.split("-")[0]
    return (
        f"  - id: {ident}\n"
        f"    name: Section {ident}\n"
        f"    country: {country}\n"
        f"    neighbour: BY\n"
        f"    centre: {{lat: {lat}, lon: 27.2}}\n"
        f"    polyline: {polyline}\n"
        f"    sensors: [thermal_camera]\n"
    )


def _write(tmp_path: Path, *entries: str, header: str = "# test catalogue\n") -> Path:
    path = tmp_path / "sections.yaml"
    path.write_text(header + "sections:\n" + "".join(entries), encoding="utf-8")
    return path


def _line_of_entry(n: int) -> int:
    """1-based line of entry ``n`` (1-based) in a file written by ``_write``."""
    return 3 + (n - 1) * ENTRY_LINES


def _load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        Catalogue.load(path)
    return str(info.value)


def test_the_shipped_catalogue_loads() -> None:
    catalogue = Catalogue.load(CONFIG_DIR / "sections.yaml")

    assert len(catalogue) >= 18
    assert catalogue.countries() == ["LT", "LV", "PL"]
    for ident, sec in catalogue.items():
        assert ident == sec.id
        assert ident.startswith(sec.country + "-"), ident
        assert sec.neighbour == "BY"
    assert catalogue["LV-KRA"].name == "Krāslava"
    assert catalogue.source == CONFIG_DIR / "sections.yaml"


def test_catalogue_keeps_file_order(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("PL-BIA"), _entry("LV-KRA"), _entry("LT-MED"))

    assert list(Catalogue.load(path)) == ["PL-BIA", "LV-KRA", "LT-MED"]


def test_centre_out_of_range_names_file_line_entry_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("LV-KRA"), _entry("LV-SIL", lat=95.0))

    message = _load_error(path)

    assert message.startswith(f"{path}:{_line_of_entry(2)}: entry 2 (LV-SIL): ")
    assert "field 'centre.lat'" in message
    assert "less than or equal to 90" in message


def test_duplicate_id_names_both_entries(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("LV-KRA"), _entry("LV-SIL"), _entry("LV-KRA"))

    message = _load_error(path)

    assert message == (
        f"{path}:{_line_of_entry(3)}: entry 3 (LV-KRA): field 'id': duplicate id, "
        "already used by entry 1"
    )


def test_id_not_starting_with_its_country_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("LV-KRA"), _entry("LT-SIL", country="LV"))

    message = _load_error(path)

    assert message.startswith(f"{path}:{_line_of_entry(2)}: entry 2 (LT-SIL): field 'country': ")
    assert "id 'LT-SIL' must start with its country 'LV'" in message


def test_polyline_point_out_of_range_names_the_polyline(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("LV-KRA", polyline="[[55.7, 27.0], [27.0, 255.0]]"))

    message = _load_error(path)

    assert message.startswith(f"{path}:{_line_of_entry(1)}: entry 1 (LV-KRA): field 'polyline': ")
    assert "[27.0, 255.0] is not a valid [lat, lon]" in message


def test_bad_section_id_pattern_names_the_id(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("lv-kra", country="LV"))

    message = _load_error(path)

    assert message.startswith(f"{path}:{_line_of_entry(1)}: entry 1 (lv-kra): field 'id': ")


def test_unknown_field_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("LV-KRA") + "    polygon: []\n")

    message = _load_error(path)

    assert "entry 1 (LV-KRA): field 'polygon': Extra inputs are not permitted" in message


def test_entry_that_is_not_a_mapping_is_named_by_index(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry("LV-KRA"), "  - just a string\n")

    message = _load_error(path)

    assert message.startswith(f"{path}:{_line_of_entry(2)}: entry 2: ")


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "sections.yaml"
    path.write_text("sections:\n  - id: LV-KRA\n    name: [unclosed\n", encoding="utf-8")

    message = _load_error(path)

    assert message.startswith(f"{path}: not valid YAML: ")
    assert "line" in message


@pytest.mark.parametrize(
    "text",
    [
        "sectons:\n  - id: LV-KRA\n",
        "- id: LV-KRA\n",
        "sections: {id: LV-KRA}\n",
        "sections:\n",
        "",
    ],
)
def test_missing_list_is_explained(tmp_path: Path, text: str) -> None:
    path = tmp_path / "sections.yaml"
    path.write_text(text, encoding="utf-8")

    assert _load_error(path) == f"{path}: expected a mapping with a list under 'sections'"


def test_empty_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sections.yaml"
    path.write_text("sections: []\n", encoding="utf-8")

    assert _load_error(path) == f"{path}: the list under 'sections' is empty"


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    message = _load_error(path)

    assert message.startswith(f"{path}: cannot read: ")


def test_a_section_id_ending_in_all_is_refused_it_names_country_level_alerts() -> None:
    from services.common.catalogue import Section

    with pytest.raises(ValueError, match="reserved for country-level alerts"):
        Section(
            id="LV-ALL",
            name="x",
            country="LV",
            neighbour="BY",
            centre={"lat": 56.0, "lon": 27.0},
            polyline=[[56.0, 27.0], [56.1, 27.1]],
        )
