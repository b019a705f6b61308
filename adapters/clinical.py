"""Patient, Condition and AllergyIntolerance -> records (pure functions)."""

from __future__ import annotations

from typing import Any

from adapters.fhirjson import concept_text, first_code, has_tag, status_code
from adapters.fhirtime import parse_date, parse_datetime
from adapters.identifiers import CS_TAGS, TAG_GENERATED
from adapters.records import ConditionRecord, PatientRecord

Resource = dict[str, Any]

INACTIVE_CONDITION = frozenset({"inactive", "remission", "resolved"})
REFUTED = frozenset({"refuted", "entered-in-error"})


def patient_from_resource(patient: Resource) -> PatientRecord:
    deceased = bool(patient.get("deceasedBoolean")) or patient.get("deceasedDateTime") is not None
    return PatientRecord(
        id=str(patient.get("id")),
        birth_date=parse_date(patient.get("birthDate")),
        sex=patient.get("gender"),
        deceased=deceased,
    )


def condition_from_resource(condition: Resource) -> ConditionRecord:
    system, code, display = first_code(condition.get("code"))
    return ConditionRecord(
        id=str(condition.get("id")),
        code=code,
        system=system,
        display=display,
        clinical_status=status_code(condition.get("clinicalStatus")),
        verification_status=status_code(condition.get("verificationStatus")),
        onset=parse_datetime(condition.get("onsetDateTime") or condition.get("recordedDate")),
        text=_text(condition.get("code")),
    )


def _text(concept: object) -> str | None:
    text = concept.get("text") if isinstance(concept, dict) else None
    return text if isinstance(text, str) and text.strip() else None


def active_clinical_condition(condition: Resource) -> ConditionRecord | None:
    """The record of an active, not refuted Condition a clinician recorded; None otherwise.

    The Conditions OncoVigil itself writes (unconfirmed, extracted from notes) are skipped: decisions and the
    recommender read what clinicians recorded, never our own extractions fed back as indications.
    """
    if has_tag(condition, CS_TAGS, TAG_GENERATED):
        return None
    record = condition_from_resource(condition)
    return record if condition_is_active(record) else None


def condition_is_active(record: ConditionRecord) -> bool:
    return record.clinical_status not in INACTIVE_CONDITION and record.verification_status not in REFUTED


def allergy_label(allergy: Resource) -> str | None:
    """The substance of an active, not refuted AllergyIntolerance; None for inactive or refuted ones."""
    if status_code(allergy.get("clinicalStatus")) in ("inactive", "resolved"):
        return None
    if status_code(allergy.get("verificationStatus")) in REFUTED:
        return None
    return concept_text(allergy.get("code"))
