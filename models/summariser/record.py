"""The summariser's only input: one drug's grouped adverse events over one period, as plain data.

``cds.grouping`` builds it from stored findings (GASCADE grouping); ``models`` never sees FHIR, notes or
patients. JSON round-trips exactly, so the same record can be stored, written to an eval file and replayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from models.errors import DataFormatError

SERIOUS_GRADE = 3


def _whole(value: Any) -> int:
    """``int()`` that refuses what it would quietly change: 2.7 -> 2 is a wrong count, True -> 1 a wrong type."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):  # JSON's NaN/Infinity would print as a median in the summary
        raise ValueError(f"{value!r} is not a finite number")
    return number


@dataclass(frozen=True)
class TermCount:
    """One CTCAE term (or adverse-event text when it maps to none) within a drug group."""

    term: str
    reports: int
    patients: int
    grades: dict[int, int] = field(default_factory=dict)  # grade -> reports at that grade
    serious: int = 0  # reports at grade >= 3

    def to_json(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "reports": self.reports,
            "patients": self.patients,
            "grades": {str(g): n for g, n in sorted(self.grades.items())},
            "serious": self.serious,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TermCount:
        return cls(
            term=str(data["term"]),
            reports=_whole(data["reports"]),
            patients=_whole(data["patients"]),
            grades={int(g): _whole(n) for g, n in dict(data.get("grades") or {}).items()},
            serious=_whole(data.get("serious", 0)),
        )


@dataclass(frozen=True)
class EvidenceRef:
    """Where a term was seen: a note id and a character span, never a name."""

    note_id: str
    term: str
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {"note_id": self.note_id, "term": self.term, "span": [self.start, self.end]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvidenceRef:
        span = list(data.get("span") or [0, 0])
        return cls(str(data["note_id"]), str(data["term"]), _whole(span[0]), _whole(span[1]))


@dataclass(frozen=True)
class DrugGroup:
    """Grouped ADE reports of one drug (RxNorm ingredient) in one period."""

    drug: str
    rxnorm: str
    period_start: str  # ISO dates: plain strings keep the leaf free of date parsing rules
    period_end: str
    patients: int
    reports: int
    terms: tuple[TermCount, ...]
    median_days_to_onset: float | None = None
    evidence: tuple[EvidenceRef, ...] = ()

    @property
    def serious_events(self) -> int:
        return sum(t.serious for t in self.terms)

    @property
    def serious_terms(self) -> tuple[TermCount, ...]:
        return tuple(t for t in self.terms if t.serious > 0)

    @property
    def key(self) -> str:
        return f"{self.rxnorm}-{self.period_start}-{self.period_end}"

    def to_json(self) -> dict[str, Any]:
        return {
            "drug": self.drug,
            "rxnorm": self.rxnorm,
            "period_start": self.period_start,
            "period_end": self.period_end,
            "patients": self.patients,
            "reports": self.reports,
            "terms": [t.to_json() for t in self.terms],
            "median_days_to_onset": self.median_days_to_onset,
            "evidence": [e.to_json() for e in self.evidence],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrugGroup:
        if not isinstance(data, dict):
            raise DataFormatError("OV-2100", f"a grouped drug record must be a JSON object, got {data!r:.80}")
        try:
            median = data.get("median_days_to_onset")
            return cls(
                drug=str(data["drug"]),
                rxnorm=str(data.get("rxnorm", "")),
                period_start=str(data.get("period_start", "")),
                period_end=str(data.get("period_end", "")),
                patients=_whole(data["patients"]),
                reports=_whole(data["reports"]),
                terms=tuple(TermCount.from_json(t) for t in data["terms"]),
                median_days_to_onset=None if median is None else _finite(median),
                evidence=tuple(EvidenceRef.from_json(e) for e in data.get("evidence") or ()),
            )
        # AttributeError: a term or evidence item that is not an object; OverflowError: int() of 1e999.
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise DataFormatError(
                "OV-2100", f"not a grouped drug record ({exc!r}); each line needs drug, patients, reports, terms"
            ) from exc
