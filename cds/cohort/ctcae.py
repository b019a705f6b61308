"""The vendored CTCAE v5.0 term list.

Read from ``cds/data/ctcae_v5_terms.csv`` (public domain; source and transformation in its README).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

from cds.errors import CohortError


@dataclass(frozen=True)
class CtcaeTerm:
    """One CTCAE v5.0 adverse-event term; ``grades[i]`` is the Grade i+1 definition ('' = not applicable)."""

    term: str
    meddra_code: str
    soc: str
    grades: tuple[str, str, str, str, str]

    @property
    def max_grade(self) -> int:
        """The highest grade CTCAE defines for this term (Alopecia stops at 2, Death is grade 5 for many)."""
        return max(i + 1 for i, text in enumerate(self.grades) if text)


def load_ctcae_terms() -> dict[str, CtcaeTerm]:
    """All 837 terms keyed by their exact CTCAE spelling (``"Nausea"``, ``"Neutrophil count decreased"``)."""
    try:
        raw = resources.files("cds.data").joinpath("ctcae_v5_terms.csv").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise CohortError(
            "OV-0040", "the vendored CTCAE list cds/data/ctcae_v5_terms.csv is missing; reinstall oncovigil"
        ) from exc
    terms: dict[str, CtcaeTerm] = {}
    for row in csv.DictReader(io.StringIO(raw)):
        grades = (row["grade1"], row["grade2"], row["grade3"], row["grade4"], row["grade5"])
        terms[row["term"]] = CtcaeTerm(row["term"], row["meddra_code"], row["soc"], grades)
    return terms
