"""AdverseEvents read back (ours or another system's) for the CDS service: drug, CTCAE term, grade, note."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.bundle import resources_of
from adapters.client import FhirClient
from adapters.fhirjson import (
    coding_in,
    concept_text,
    extension,
    has_tag,
    reference_id,
    reference_text,
    status_code,
)
from adapters.fhirtime import parse_datetime
from adapters.identifiers import (
    CS_TAGS,
    ENTERED_IN_ERROR,
    EXT_CTCAE_GRADE,
    EXT_R5_ADVERSE_EVENT_STATUS,
    EXT_SUSPECT_REQUEST,
    MEDDRA,
    RXNORM,
    SID_ADVERSE_EVENT,
    TAG_GENERATED,
)
from adapters.records import RecordedAdverseEvent

Resource = dict[str, Any]


def _suspect_drug(event: Resource, medications: Mapping[str, Resource]) -> tuple[str | None, str | None, str | None]:
    """(RxNorm code, display, MedicationRequest id) of the first suspect entity."""
    suspects = [s for s in event.get("suspectEntity") or [] if isinstance(s, dict)]
    if not suspects:
        return None, None, None
    suspect = suspects[0]
    instance = suspect.get("instance") or {}
    reference = reference_text(instance) or ""
    medication: Resource | None = None
    if reference.startswith("#"):
        medication = next((c for c in event.get("contained") or [] if f"#{c.get('id')}" == reference), None)
    elif reference.startswith("Medication/"):
        medication = medications.get(reference)
    concept = (medication or {}).get("code")
    rxnorm = coding_in(concept, RXNORM)
    display = instance.get("display") or concept_text(concept)
    request_ext = extension(suspect, EXT_SUSPECT_REQUEST)
    request_id = reference_id((request_ext or {}).get("valueReference"), "MedicationRequest")
    return (rxnorm or {}).get("code"), display, request_id


def adverse_event_record(event: Resource, medications: Mapping[str, Resource] | None = None) -> RecordedAdverseEvent:
    """Map one AdverseEvent (pure); ``medications`` holds referenced Medications by ``Medication/<id>``."""
    rxnorm, display, request_id = _suspect_drug(event, medications or {})
    grade_ext = extension(event, EXT_CTCAE_GRADE)
    grade = grade_ext.get("valueInteger") if grade_ext else None
    meddra = coding_in(event.get("event"), MEDDRA)
    identifier = event.get("identifier")
    ours = isinstance(identifier, dict) and identifier.get("system") == SID_ADVERSE_EVENT
    seriousness = status_code(event.get("seriousness"))
    documents = event.get("referenceDocument") or []
    return RecordedAdverseEvent(
        id=str(event.get("id")),
        patient_id=reference_id(event.get("subject"), "Patient"),
        drug_rxnorm=rxnorm,
        drug_display=display,
        ctcae_term=(event.get("event") or {}).get("text")
        or (meddra or {}).get("display")
        or concept_text(event.get("event")),
        meddra_code=(meddra or {}).get("code"),
        grade=grade if isinstance(grade, int) else None,
        date=parse_datetime(event.get("date") or event.get("detected")),
        note_id=reference_id(documents[0], "DocumentReference") if documents else None,
        medication_request_id=request_id,
        finding_key=str(identifier.get("value")) if ours and isinstance(identifier, dict) else None,
        serious=None if seriousness is None else seriousness.startswith("Serious"),
        severity=status_code(event.get("severity")),
        generated_by_oncovigil=has_tag(event, CS_TAGS, TAG_GENERATED),
    )


def is_entered_in_error(event: Resource) -> bool:
    """Withdrawn through R5's status carried in R4 (the cross-version extension): it should never have existed."""
    status = extension(event, EXT_R5_ADVERSE_EVENT_STATUS)
    return status is not None and status.get("valueCode") == ENTERED_IN_ERROR


def parse_adverse_events(bundle_or_resources: Any) -> list[RecordedAdverseEvent]:
    """Every AdverseEvent in a Bundle, a resource or a list of either, but those entered in error; included
    Medications resolve drugs."""
    resources = list(resources_of(bundle_or_resources))
    medications = {f"Medication/{r.get('id')}": r for r in resources if r.get("resourceType") == "Medication"}
    return [
        adverse_event_record(r, medications)
        for r in resources
        if r.get("resourceType") == "AdverseEvent" and not is_entered_in_error(r)
    ]


async def fetch_adverse_events(client: FhirClient, patient_id: str) -> list[RecordedAdverseEvent]:
    """All AdverseEvents of a patient (R4 searches them by ``subject``), referenced Medications included."""
    pages = [
        bundle
        async for bundle in client.search_bundles(
            "AdverseEvent", [("subject", f"Patient/{patient_id}"), ("_include", "AdverseEvent:substance")]
        )
    ]
    return parse_adverse_events(pages)
