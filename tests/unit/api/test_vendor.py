"""The dashboard's vendored npm packages are the pinned versions, unedited, with licences.

``make vendor`` (scripts/vendor.py) installs the lock with ``npm ci`` and writes
``MANIFEST.json``; here, without network, every vendored file must still hash to
what was installed, every pin must be exact and agree with the lock, and the
files' own version banners must name the pinned version.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parents[3] / "services" / "api" / "static" / "vendor"
PINS: dict[str, str] = json.loads((VENDOR / "package.json").read_text())["dependencies"]
LOCK = json.loads((VENDOR / "package-lock.json").read_text())["packages"]
MANIFEST = json.loads((VENDOR / "MANIFEST.json").read_text())


def test_every_pin_is_exact_and_agrees_with_the_lock_and_the_manifest() -> None:
    assert set(PINS) == {"world-atlas", "topojson-client", "uplot"}
    for package, version in PINS.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{package}: {version!r} is not exact"
        assert LOCK[f"node_modules/{package}"]["version"] == version, package
        assert LOCK[f"node_modules/{package}"]["integrity"].startswith("sha512-"), package
        assert MANIFEST[package]["version"] == version, package


@pytest.mark.parametrize("package", sorted(MANIFEST))
def test_vendored_files_are_the_installed_bytes_with_their_licence(package: str) -> None:
    files = MANIFEST[package]["files"]
    assert "LICENSE" in files, f"{package}: no licence vendored"
    licence = (VENDOR / package / "LICENSE").read_text()
    assert "Permission" in licence and "copyright" in licence.lower(), package
    for name, digest in files.items():
        path = VENDOR / package / name
        assert path.is_file(), f"{path} is missing: run `make vendor`"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, (
            f"{path} differs from {package} {PINS[package]}: run `make vendor`"
        )
    # Nothing unlisted sits beside them (the dashboard serves what is vendored).
    assert {p.name for p in (VENDOR / package).iterdir()} == set(files)


def test_the_files_name_the_pinned_versions() -> None:
    uplot = (VENDOR / "uplot" / "uPlot.iife.min.js").read_text()
    assert uplot.startswith(f"/*! https://github.com/leeoniya/uPlot (v{PINS['uplot']}) */")
    topo = (VENDOR / "topojson-client" / "topojson-client.min.js").read_text()
    assert topo.startswith(
        f"// https://github.com/topojson/topojson-client v{PINS['topojson-client']} "
    )
    atlas = json.loads((VENDOR / "world-atlas" / "countries-50m.json").read_text())
    names = {g["properties"]["name"] for g in atlas["objects"]["countries"]["geometries"]}
    assert {"Belarus", "Latvia", "Lithuania", "Poland"} <= names
