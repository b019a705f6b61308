"""The phenotype extractor's output: one normalised value per field, each with the text that states it."""

from __future__ import annotations

from dataclasses import dataclass

from models.phenotype.labels import FIELDS


@dataclass(frozen=True)
class PhenotypeField:
    """A normalised value (``"positive"``, ``"T2N1M0"``, ``"IIIA"``) and its evidence span in the note."""

    name: str
    value: str
    text: str
    span: tuple[int, int]
    confidence: float
    inferred: bool = False  # derived from another field (diagnosis from site, laterality from "RUL")


@dataclass(frozen=True)
class Phenotype:
    """The fields a note states; a field it does not state is absent."""

    fields: tuple[PhenotypeField, ...] = ()

    def get(self, name: str) -> PhenotypeField | None:
        return next((f for f in self.fields if f.name == name), None)

    def value(self, name: str) -> str | None:
        found = self.get(name)
        return found.value if found else None

    def values(self) -> dict[str, str | None]:
        return {name: self.value(name) for name in FIELDS}
