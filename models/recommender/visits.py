"""Visits as plain records: the recommender's training and evaluation unit, and the visits.jsonl format.

One JSON object per line: ``{"visit_id", "patient": {"age", "sex", "conditions", "previous_medications",
"allergies", "history"}, "candidates", "prescribed", "overprescribed"}``; extra keys are ignored except
``patient_id`` (kept as the split group). A drug listed both as prescribed and as overprescribed counts as
an overprescription only: it is never a positive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import DataFormatError
from models.recommender.prompt import PatientSummary
from models.text_files import jsonl_values


@dataclass(frozen=True)
class TrainingVisit:
    """One encounter as plain strings: the patient, what was ordered, and which drugs were candidates.

    ``candidates`` empty means "only the prescribed and overprescribed drugs"; callers normally pass the
    drug vocabulary of the data set.
    """

    visit_id: str
    patient: PatientSummary
    prescribed: tuple[str, ...]
    candidates: tuple[str, ...] = ()
    overprescribed: tuple[str, ...] = ()
    group: str = ""  # what the dev split keeps together (the patient)

    @property
    def appropriate(self) -> tuple[str, ...]:
        """The prescribed drugs that were not deliberate overprescriptions (the positives)."""
        return tuple(d for d in self.prescribed if d not in self.overprescribed)

    @property
    def universe(self) -> tuple[str, ...]:
        seen = dict.fromkeys((*self.candidates, *self.prescribed, *self.overprescribed))
        return tuple(seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "visit_id": self.visit_id,
            "patient": self.patient.to_json(),
            "candidates": list(self.candidates),
            "prescribed": list(self.prescribed),
            "overprescribed": list(self.overprescribed),
            "patient_id": self.group,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "visit") -> TrainingVisit:
        if not isinstance(data, dict):
            raise DataFormatError("OV-2078", f"{where} is not a JSON object; one visit object per line")
        try:
            lists = {k: data.get(k, []) for k in ("candidates", "prescribed", "overprescribed")}
            for key, value in lists.items():
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise DataFormatError("OV-2078", f"{where}: '{key}' must be a list of strings")
            try:
                patient = PatientSummary.from_json(data["patient"])
            except DataFormatError as exc:  # the patient parser cannot know the line; keep its code, add it
                raise DataFormatError(exc.code, f"{where}: {str(exc).removeprefix(f'{exc.code}: ')}") from exc
            return cls(
                visit_id=str(data["visit_id"]),
                patient=patient,
                prescribed=tuple(lists["prescribed"]),
                candidates=tuple(lists["candidates"]),
                overprescribed=tuple(lists["overprescribed"]),
                group=str(data.get("patient_id", "") or ""),
            )
        except KeyError as exc:
            raise DataFormatError("OV-2078", f"{where} lacks the key {exc}; see the visits.jsonl format") from exc


def read_visits(path: Path) -> list[TrainingVisit]:
    """Parse a visits.jsonl file; a bad line raises DataFormatError naming the line."""
    lines = jsonl_values(path, "OV-2079", "a visits.jsonl file (one visit object per line)")
    return [TrainingVisit.from_json(data, f"{path}:{number}") for number, data in lines]


def write_visits(path: Path, visits: Iterable[TrainingVisit]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for visit in visits:
            fh.write(json.dumps(visit.to_json(), sort_keys=True) + "\n")
