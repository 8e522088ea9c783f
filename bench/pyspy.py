"""py-spy, as the benchmarks that profile a process use it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

# Installed with the dev requirements, beside this interpreter.
PY_SPY = str(Path(sys.executable).with_name("py-spy"))


def raw_stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    """The samples of py-spy's ``--format raw`` output: (frames, root first and
    without the ``thread ...`` frame that ``--threads`` adds, samples)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        yield [f for f in stack.split(";") if f and not f.startswith("thread ")], int(count)
