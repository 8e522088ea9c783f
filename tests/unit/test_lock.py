"""The lock files agree with pyproject.toml, and every install path uses them.

``requirements/dev.txt`` (runtime + dev tools) and ``requirements/runtime.txt``
(what deploy/Dockerfile installs) are written by ``make lock`` (pip-compile with
hashes). A dependency added to pyproject.toml but not to the lock would not be
installed at all (``make install`` installs the lock with ``--no-deps`` semantics
for the project), so these tests fail until ``make lock`` is run.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements" / "dev.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
BUILD_LOCK = ROOT / "requirements" / "build.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# A pin and its hashes, as pip-compile --generate-hashes writes them.
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+) \\\n"
    r"(?P<hashes>(?:[ \t]+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
    re.M,
)
Lock = dict[str, tuple[str, frozenset[str]]]


def _parse(path: Path) -> Lock:
    text = path.read_text(encoding="utf-8")
    pins: Lock = {}
    for m in _PIN.finditer(text):
        hashes = frozenset(re.findall(r"sha256:([0-9a-f]{64})", m.group("hashes")))
        pins[canonicalize_name(m.group("name"))] = (m.group("version"), hashes)
    # Every requirement line is a hashed pin: nothing unpinned or unhashed slipped in.
    lines = [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "--hash"))
    ]
    assert len(lines) == len(pins), (
        f"{path.name}: lines that are not `name==version` with hashes: "
        f"{[line for line in lines if not re.match(r'^[A-Za-z0-9._-]+==', line)][:5]}"
    )
    return pins


@pytest.fixture(scope="module")
def dev_lock() -> Lock:
    return _parse(DEV_LOCK)


@pytest.fixture(scope="module")
def runtime_lock() -> Lock:
    return _parse(RUNTIME_LOCK)


def _declared(group: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    raw = project["dependencies"] if group == "runtime" else project["optional-dependencies"][group]
    return [Requirement(r) for r in raw]


@pytest.mark.parametrize(
    ("lock_name", "groups"), [("runtime", ("runtime",)), ("dev", ("runtime", "dev"))]
)
def test_every_declared_dependency_is_locked_within_its_range(
    lock_name: str, groups: tuple[str, ...], dev_lock: Lock, runtime_lock: Lock
) -> None:
    lock = runtime_lock if lock_name == "runtime" else dev_lock
    problems = []
    for group in groups:
        for req in _declared(group):
            pin = lock.get(canonicalize_name(req.name))
            if pin is None:
                problems.append(f"{req} ({group}) is not in requirements/{lock_name}.txt")
            elif not req.specifier.contains(pin[0], prereleases=True):
                problems.append(f"{req} ({group}) is locked at {pin[0]}, outside its range")
            elif not pin[1]:
                problems.append(f"{req.name} has no hashes")
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_the_runtime_lock_is_the_dev_lock_without_the_dev_tools(
    dev_lock: Lock, runtime_lock: Lock
) -> None:
    """The image runs the very versions the tests ran against."""
    differ = {
        name: (pin[0], dev_lock.get(name, ("missing", frozenset()))[0])
        for name, pin in runtime_lock.items()
        if dev_lock.get(name) != pin
    }
    assert not differ, f"runtime.txt vs dev.txt (version, version): {differ}"
    assert len(runtime_lock) < len(dev_lock)
    for tool in ("pytest", "mypy", "ruff", "pip-audit", "kubernetes-validate"):
        assert tool in dev_lock and tool not in runtime_lock, tool


def test_the_build_lock_pins_the_build_system_as_dev_does(dev_lock: Lock) -> None:
    """The image builds the project with these (--no-build-isolation), so they are locked."""
    build = _parse(BUILD_LOCK)
    for raw in PYPROJECT["build-system"]["requires"]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in build, f"build-system requirement {req} not in requirements/build.txt"
        assert req.specifier.contains(build[name][0]), (req, build[name][0])
    assert all(dev_lock.get(name) == pin for name, pin in build.items()), "build.txt vs dev.txt"


def _closure(roots: list[Requirement]) -> dict[str, str]:
    """Every distribution that ``roots`` need (extras included), from the installed metadata."""
    seen: dict[str, str] = {}
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is not installed: run `make install`")
        seen[key] = name
        for raw in dist.requires or []:
            sub = Requirement(raw)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    return {name: key for key, name in seen.items()}


@pytest.mark.parametrize(
    ("lock_name", "groups"), [("runtime", ("runtime",)), ("dev", ("runtime", "dev"))]
)
def test_the_lock_holds_everything_the_declared_dependencies_need(
    lock_name: str, groups: tuple[str, ...], dev_lock: Lock, runtime_lock: Lock
) -> None:
    """Transitive dependencies too (uvicorn[standard]'s uvloop, ...): an install with
    --require-hashes fails on anything the lock lacks."""
    lock = runtime_lock if lock_name == "runtime" else dev_lock
    needed = _closure([r for g in groups for r in _declared(g)])
    assert {"uvloop", "httptools", "starlette", "aiohttp"} <= needed.keys()
    missing = sorted(set(needed) - set(lock))
    assert not missing, f"needed but not in requirements/{lock_name}.txt: {missing}"


def test_grafana_sdk_stays_pinned_exactly(dev_lock: Lock) -> None:
    # Older builds carry the epoch 1769699998!10.1.0, which sorts above 0.0.21.
    assert dev_lock["grafana-foundation-sdk"][0] == "0.0.21"


def test_install_paths_use_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^LOCK := requirements/dev\.txt$", makefile, re.M)
    assert re.search(r"^RUNTIME_LOCK := requirements/runtime\.txt$", makefile, re.M)
    stamp = re.search(r"^\$\(STAMP\): (.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert stamp, "no $(STAMP) rule in the Makefile"
    assert "$(LOCK)" in stamp.group(1).split(), "a changed lock must re-install"
    recipe = stamp.group(2)
    assert "pip install -q --require-hashes -r $(LOCK)" in recipe
    # The project itself adds no resolution of its own.
    assert "pip install -q --no-deps --no-build-isolation -e ." in recipe
    assert not re.search(r"pip install (?!.*(--require-hashes|--no-deps))", recipe), recipe
    # `make lock` writes both files with the flags their headers record.
    for path in (DEV_LOCK, RUNTIME_LOCK, BUILD_LOCK):
        header = path.read_text(encoding="utf-8").splitlines()[4]
        for flag in ("--generate-hashes", "--allow-unsafe", "--strip-extras"):
            assert flag in header, (path.name, flag)
    for path in (RUNTIME_LOCK, BUILD_LOCK):
        assert "--constraint=requirements/dev.txt" in path.read_text("utf-8"), path.name
    # CI runs `make test`, which installs through $(STAMP).
    assert re.search(r"^test: install\b", makefile, re.M)
    assert re.search(r"^install: \$\(STAMP\)", makefile, re.M)
