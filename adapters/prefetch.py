"""CDS Hooks prefetch (and ``draftOrders``) JSON -> records; raw FHIR is parsed here, never in ``cds``.

Prefetch keys are chosen by the service definition, so resources are dispatched by ``resourceType``, not by
key. A key whose value is null (the EHR could not fetch it) is listed in ``missing`` so the caller can
fetch it from the FHIR server instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from adapters.adverse_events import parse_adverse_events
from adapters.bundle import resources_of
from adapters.clinical import active_clinical_condition, allergy_label, patient_from_resource
from adapters.orders import order_from_request
from adapters.records import (
    ConditionRecord,
    MedicationOrder,
    PatientContext,
    PatientRecord,
    RecordedAdverseEvent,
)

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParsedPrefetch:
    patient: PatientRecord | None
    conditions: list[ConditionRecord] = field(default_factory=list)
    medications: list[MedicationOrder] = field(default_factory=list)
    allergies: list[str] = field(default_factory=list)
    adverse_events: list[RecordedAdverseEvent] = field(default_factory=list)
    missing: tuple[str, ...] = ()

    def context(self, today: date | None = None) -> PatientContext | None:
        """The recommender's context from the prefetch alone (no notes); None without a Patient."""
        if self.patient is None:
            return None
        day = today or datetime.now(UTC).date()
        return PatientContext(
            patient_id=self.patient.id,
            age=self.patient.age_on(day),
            sex=self.patient.sex,
            conditions=list(self.conditions),
            medications=list(self.medications),
            allergies=list(self.allergies),
            recent_notes=[],
        )


def parse_medication_requests(value: Any) -> list[MedicationOrder]:
    """MedicationRequests in a Bundle or list (``context.draftOrders``), drugs resolved via Medications."""
    resources = list(resources_of(value))
    medications = {f"Medication/{r.get('id')}": r for r in resources if r.get("resourceType") == "Medication"}
    return [order_from_request(r, medications) for r in resources if r.get("resourceType") == "MedicationRequest"]


def parse_prefetch(prefetch: Mapping[str, Any] | None) -> ParsedPrefetch:
    """Patient, active Conditions, MedicationRequests, active allergies and AdverseEvents from a prefetch."""
    if not prefetch:
        return ParsedPrefetch(patient=None)
    missing = tuple(sorted(key for key, value in prefetch.items() if value is None))
    resources = [r for value in prefetch.values() if value is not None for r in resources_of(value)]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    conditions: dict[str, ConditionRecord] = {}
    for resource in resources:
        if resource.get("resourceType") == "Condition" and (record := active_clinical_condition(resource)):
            conditions.setdefault(record.id, record)
    orders: dict[str, MedicationOrder] = {}
    for order in parse_medication_requests(resources):
        orders.setdefault(order.id, order)
    allergies = sorted(
        {label for r in resources if r.get("resourceType") == "AllergyIntolerance" and (label := allergy_label(r))}
    )
    return ParsedPrefetch(
        patient=patient_from_resource(patients[0]) if patients else None,
        conditions=list(conditions.values()),
        medications=list(orders.values()),
        allergies=allergies,
        adverse_events=parse_adverse_events(resources),
        missing=missing,
    )
