"""Load operator YAML files (sections, rules) with errors that point at the spot.

A bad file stops start-up with a message naming the file, the line, the entry
and the field, e.g.::

    deploy/config/sections.yaml:24: entry 3 (LV-KRA): field 'centre.lat': Input should be
    less than or equal to 90
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from services.common.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _read(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _entry_lines(root: yaml.Node | None, key: str) -> list[int]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for k, v in root.value:
        if getattr(k, "value", None) == key and isinstance(v, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in v.value]
    return []


def _loc(loc: tuple[int | str, ...], raw: Any) -> tuple[int | str, ...]:
    """Drop the tag a discriminated union puts first (``threshold.severity`` -> ``severity``)."""
    if loc and isinstance(raw, dict) and loc[0] == raw.get("type"):
        return loc[1:]
    return loc


def load_entries(path: Path, key: str, model: type[M], *, id_field: str = "id") -> list[M]:
    """Validate ``path``'s top-level list ``key`` as ``model`` entries with unique ids."""
    data, root = _read(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ConfigError(f"{path}: expected a mapping with a list under {key!r}")
    lines = _entry_lines(root, key)
    entries: list[M] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(data[key]):
        line = lines[index] if index < len(lines) else 0
        label = f"entry {index + 1}"
        if isinstance(raw, dict) and isinstance(raw.get(id_field), str):
            label += f" ({raw[id_field]})"
        try:
            entry = model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"field {'.'.join(str(p) for p in _loc(err['loc'], raw)) or '(entry)'!r}: "
                f"{err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"{path}:{line}: {label}: {problems}") from exc
        ident = str(getattr(entry, id_field))
        if ident in seen:
            raise ConfigError(
                f"{path}:{line}: {label}: field {id_field!r}: duplicate id, "
                f"already used by entry {seen[ident] + 1}"
            )
        seen[ident] = index
        entries.append(entry)
    if not entries:
        raise ConfigError(f"{path}: the list under {key!r} is empty")
    return entries
