"""Vendor the dashboard's front-end packages (``make vendor``).

The versions are pinned in ``services/api/static/vendor/package.json`` and its
``package-lock.json`` (integrity hashes). This script installs exactly that lock
with ``npm ci`` into a temporary directory, copies the files the dashboard
serves and each package's licence into ``services/api/static/vendor/<package>/``,
and writes ``MANIFEST.json`` (package, version, licence, sha256 of every file).
``tests/unit/api/test_vendor.py`` checks the vendored files against it and the
pins. ``--check`` installs again and fails if a vendored file differs.

Run: ``python scripts/vendor.py [--check]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "services" / "api" / "static" / "vendor"

# package -> files copied from the package (path inside it -> name in vendor/<package>/).
FILES: dict[str, dict[str, str]] = {
    # Natural Earth 1:50m countries (756 KB): the border at about 1-2 km, small enough
    # for every page load; the 10m file is 3.6 MB.
    "world-atlas": {"countries-50m.json": "countries-50m.json", "LICENSE": "LICENSE"},
    "topojson-client": {
        "dist/topojson-client.min.js": "topojson-client.min.js",
        "LICENSE": "LICENSE",
    },
    "uplot": {
        "dist/uPlot.iife.min.js": "uPlot.iife.min.js",
        "dist/uPlot.min.css": "uPlot.min.css",
        "LICENSE": "LICENSE",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def npm_ci(into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("vendor: npm is not installed (apt-get install npm)")
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(VENDOR / name, into / name)
    subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=into,
        check=True,
    )
    return into / "node_modules"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    pins = json.loads((VENDOR / "package.json").read_text())["dependencies"]
    if set(pins) != set(FILES):
        sys.exit(f"vendor: package.json pins {sorted(pins)}, FILES lists {sorted(FILES)}")
    with tempfile.TemporaryDirectory(prefix="bw-vendor-") as tmp:
        modules = npm_ci(Path(tmp))
        manifest: dict[str, dict[str, object]] = {}
        differs: list[str] = []
        for package, files in FILES.items():
            meta = json.loads((modules / package / "package.json").read_text())
            if meta["version"] != pins[package]:
                sys.exit(
                    f"vendor: npm installed {package} {meta['version']}, pinned {pins[package]}"
                )
            target = VENDOR / package
            entry: dict[str, object] = {
                "version": meta["version"],
                "license": meta["license"],
                "files": {},
            }
            for source, name in files.items():
                src = modules / package / source
                dest = target / name
                if args.check:
                    if not dest.exists() or dest.read_bytes() != src.read_bytes():
                        differs.append(str(dest.relative_to(REPO)))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)
                entry["files"][name] = sha256(src)  # type: ignore[index]
            manifest[package] = entry
    if args.check:
        if differs:
            print("vendor: these files differ from the pinned packages:", *differs, sep="\n  ")
            return 1
        print("vendor: every vendored file matches the pinned packages")
        return 0
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(
        f"vendor: wrote {', '.join(f'{p} {pins[p]}' for p in pins)} into {VENDOR.relative_to(REPO)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
