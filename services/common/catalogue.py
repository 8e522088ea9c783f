"""The section catalogue (``deploy/config/sections.yaml``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from schemas.models import CountryCode, Location, SectionId, SourceType
from services.common.yamlconfig import load_entries

LatLon = Annotated[list[float], Field(min_length=2, max_length=2)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: SectionId
    name: Annotated[str, Field(min_length=1, max_length=80)]
    country: CountryCode
    neighbour: CountryCode
    centre: Location
    polyline: Annotated[list[LatLon], Field(min_length=2, max_length=64)]
    sensors: list[SourceType] = Field(default_factory=list)

    # Field validators (not one model validator) so a config error names the
    # field instead of the whole entry. ``id`` is declared before ``country``,
    # so it is in ``info.data`` here when it was valid.
    @field_validator("id")
    @classmethod
    def _not_country_level(cls, value: str) -> str:
        if value.endswith("-ALL"):
            raise ValueError(
                f"id {value!r}: ids ending in -ALL are reserved for country-level alerts"
            )
        return value

    @field_validator("country")
    @classmethod
    def _id_prefix(cls, value: str, info: ValidationInfo) -> str:
        ident = info.data.get("id")
        if isinstance(ident, str) and not ident.startswith(value + "-"):
            raise ValueError(f"id {ident!r} must start with its country {value!r}")
        return value

    @field_validator("polyline")
    @classmethod
    def _polyline(cls, value: list[list[float]]) -> list[list[float]]:
        for lat, lon in value:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"polyline point [{lat}, {lon}] is not a valid [lat, lon]")
        return value


class Catalogue(Mapping[str, Section]):
    """Sections by id, in file order."""

    def __init__(self, sections: list[Section], source: Path | None = None) -> None:
        self._by_id = {s.id: s for s in sections}
        self.source = source

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        return cls(load_entries(path, "sections", Section), source=path)

    def __getitem__(self, key: str) -> Section:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def countries(self) -> list[str]:
        return sorted({s.country for s in self._by_id.values()})
