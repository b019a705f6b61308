"""Notes and patient Conditions straight from bulk-export NDJSON files (evaluation data; no server needed).

Only inline text (``attachment.data``) is read: a bulk export that points at Binary URLs needs the server,
and such documents are skipped here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.bulk_load import read_ndjson_rows
from adapters.clinical import condition_from_resource
from adapters.errors import LoadInputError
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
    # An empty folder is allowed here: the evaluation refuses "no notes" itself, with a message about notes.
    for where, resource in read_ndjson_rows(folder, allow_empty=True):
        kind = resource.get("resourceType")
        try:
            if kind == "Condition":
                patient = reference_id(resource.get("subject"), "Patient")
                conditions.append(PatientCondition(patient, condition_from_resource(resource)))
            elif kind == "DocumentReference":
                attachment = _inline_attachment(resource, where)
                if attachment is None:
                    continue
                try:
                    text = to_text(decode_base64(attachment["data"]), attachment.get("contentType"))
                except TextSkip:
                    continue
                notes.append(Note(text=text, **note_fields(resource)))
        except (AttributeError, TypeError) as exc:
            # The mappers trust the R4 shape (objects where R4 has objects); a hand-edited file may not
            # have it, and that is the file's fault, not ours.
            raise LoadInputError(
                "OV-1098", f"{where}: {kind} has a field of the wrong JSON type ({exc}); fix the file"
            ) from exc
    return notes, conditions


def _inline_attachment(document: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The first attachment with inline ``data``; None when every attachment is by URL."""
    content = document.get("content") or []
    if not isinstance(content, list):
        raise LoadInputError("OV-1098", f"{where}: DocumentReference.content must be a JSON array; fix the file")
    for index, item in enumerate(content):
        attachment = item.get("attachment") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(attachment, dict | None):
            raise LoadInputError(
                "OV-1098",
                f"{where}: DocumentReference.content[{index}] must be an object with an attachment object; "
                "fix the file",
            )
        data = (attachment or {}).get("data")
        if not data:
            continue
        content_type = (attachment or {}).get("contentType")
        if not isinstance(data, str) or not isinstance(content_type, str | None):
            raise LoadInputError(
                "OV-1098",
                f"{where}: DocumentReference.content[{index}].attachment data and contentType must be strings; "
                "fix the file",
            )
        return attachment
    return None
