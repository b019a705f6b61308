"""Find drug mentions in free text by dictionary, so raw notes can feed the combination classifier.

The classifier needs drug spans; DrugComb gives gold spans, clinical notes do not. The default names are
DrugComb's own ``drugs.txt`` (shipped in the model directory); the caller may add names (e.g. brand ->
ingredient) it knows from the patient's medication orders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from models.errors import ModelLoadError
from models.model_files import read_model_text

DRUGS_FILE = "drugs.txt"


@dataclass(frozen=True)
class DrugMention:
    """A drug name found in text: character offsets and the canonical (lower-case) name."""

    start: int
    end: int
    name: str


class DrugLexicon:
    """Case-insensitive whole-word matching, longest name first; hyphens and slashes separate names."""

    def __init__(self, names: Iterable[str], extra: Mapping[str, str] | None = None) -> None:
        canonical: dict[str, str] = {}
        for name in names:
            cleaned = " ".join(name.split()).lower()
            if len(cleaned) >= 3:
                canonical.setdefault(cleaned, cleaned)
        for surface, target in (extra or {}).items():
            canonical[" ".join(surface.split()).lower()] = target.lower()
        self._canonical = canonical
        alternatives = sorted(canonical, key=len, reverse=True)
        body = "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alternatives) or r"(?!x)x"
        self._pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{body})(?![A-Za-z0-9])", re.IGNORECASE)

    def __len__(self) -> int:
        return len(self._canonical)

    def find(self, text: str) -> list[DrugMention]:
        out: list[DrugMention] = []
        for match in self._pattern.finditer(text):
            key = " ".join(match.group(0).split()).lower()
            out.append(DrugMention(match.start(), match.end(), self._canonical.get(key, key)))
        return out

    @classmethod
    def from_file(cls, path: Path, extra: Mapping[str, str] | None = None) -> DrugLexicon:
        if not path.is_file():
            raise ModelLoadError(
                "OV-2018", f"{path} is missing; rebuild the drugcomb model with `oncovigil models build`"
            )
        names = [line.strip() for line in read_model_text(path, "OV-2018").splitlines() if line.strip()]
        return cls(names, extra)
