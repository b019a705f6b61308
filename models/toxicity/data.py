"""Toxicity ground truth from the synthetic cohort's ``notes.jsonl`` (one JSON object per note).

Only ``kind == "radiotherapy"`` notes carry toxicity truth (other notes report every symptom as not
mentioned even when they discuss, say, drug-induced diarrhoea), so the others are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import DataFormatError
from models.text_files import jsonl_values
from models.toxicity.labels import STATUSES


@dataclass(frozen=True)
class SymptomTruth:
    """A symptom's status and grade in a note; ``span`` locates the mention (training uses it)."""

    status: str
    grade: int | None
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class ToxicityNote:
    """A note's text and, for each symptom of the list, its true status and grade."""

    note_id: str
    text: str
    truth: Mapping[str, SymptomTruth]


def parse_note(obj: Any, symptoms: Sequence[str], where: str = "record") -> ToxicityNote | None:
    """The note as a training/eval example, or ``None`` when it is not a radiotherapy note."""
    if not isinstance(obj, dict):
        raise DataFormatError("OV-2073", f"{where}: expected a JSON object per line, got {type(obj).__name__}")
    kind = obj.get("kind", "radiotherapy")
    if kind != "radiotherapy":
        return None
    text, toxicities = obj.get("text"), obj.get("toxicities")
    if not isinstance(text, str) or not isinstance(toxicities, dict):
        raise DataFormatError(
            "OV-2073",
            f"{where}: a radiotherapy note needs 'text' (string) and 'toxicities' (object); "
            "pass the cohort generator's notes.jsonl",
        )
    truth: dict[str, SymptomTruth] = {}
    for symptom in symptoms:
        entry = toxicities.get(symptom)
        if not isinstance(entry, dict) or entry.get("status") not in STATUSES:
            raise DataFormatError(
                "OV-2073", f"{where}: toxicities[{symptom!r}] needs a status of {', '.join(STATUSES)}"
            )
        grade = entry.get("grade")
        if grade is not None and (not isinstance(grade, int) or isinstance(grade, bool) or not 1 <= grade <= 5):
            raise DataFormatError(
                "OV-2073", f"{where}: toxicities[{symptom!r}].grade must be a CTCAE grade 1..5 or null, got {grade!r}"
            )
        raw_span = entry.get("span")
        span = None
        if isinstance(raw_span, list) and len(raw_span) == 2 and all(isinstance(v, int) for v in raw_span):
            span = (int(raw_span[0]), int(raw_span[1]))
        truth[symptom] = SymptomTruth(str(entry["status"]), grade, span)
    return ToxicityNote(str(obj.get("note_id", where)), text, truth)


def notes_from_records(records: Iterable[Any], symptoms: Sequence[str]) -> list[ToxicityNote]:
    """Radiotherapy notes from already-parsed records (the cohort generator's in-memory output)."""
    out: list[ToxicityNote] = []
    for index, obj in enumerate(records):
        note = parse_note(obj, symptoms, f"record {index}")
        if note is not None:
            out.append(note)
    return out


def read_notes(path: Path, symptoms: Sequence[str]) -> list[ToxicityNote]:
    """Radiotherapy notes of a notes.jsonl file; a file without any is an input error."""
    notes: list[ToxicityNote] = []
    for number, obj in jsonl_values(path, "OV-2072", "the cohort generator's notes.jsonl"):
        note = parse_note(obj, symptoms, f"{path}:{number}")
        if note is not None:
            notes.append(note)
    if not notes:
        raise DataFormatError(
            "OV-2072",
            f"{path} holds no radiotherapy notes (kind == 'radiotherapy' with toxicities); "
            "generate a cohort with `oncovigil cohort generate`",
        )
    return notes
