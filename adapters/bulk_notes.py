"""Notes and patient Conditions straight from bulk-export NDJSON files (evaluation data; no server needed).

Only inline text (``attachment.data``) is read: a bulk export that points at Binary URLs needs the server,
and such documents are skipped here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.bulk_load import read_ndjson_dir
from adapters.clinical import condition_from_resource
from adapters.fhirjson import reference_id
from adapters.notes import note_fields
from adapters.records import ConditionRecord, Note
from adapters.text import TextSkip, decode_base64, to_text


@dataclass(frozen=True, slots=True)
class PatientCondition:
    patient_id: str | None
    condition: ConditionRecord


def bulk_notes_and_conditions(folder: Path) -> tuple[list[Note], list[PatientCondition]]:
    notes: list[Note] = []
    conditions: list[PatientCondition] = []
    for resource in read_ndjson_dir(folder):
        kind = resource.get("resourceType")
        if kind == "Condition":
            patient = reference_id(resource.get("subject"), "Patient")
            conditions.append(PatientCondition(patient, condition_from_resource(resource)))
        elif kind == "DocumentReference":
            attachment = next(
                (
                    c.get("attachment") or {}
                    for c in resource.get("content") or []
                    if (c.get("attachment") or {}).get("data")
                ),
                None,
            )
            if attachment is None:
                continue
            try:
                text = to_text(decode_base64(str(attachment["data"])), attachment.get("contentType"))
            except TextSkip:
                continue
            notes.append(Note(text=text, **note_fields(resource)))
    return notes, conditions
