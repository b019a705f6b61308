"""Ground-truth records of the synthetic cohort (formats fixed by the models and evaluation code).

``to_json`` gives exactly the keys of the truth contract first, then a few extra keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds.cohort.text import Span

GENERATOR_VERSION = "ov-cohort.v1"


@dataclass(frozen=True)
class AdeTruth:
    drug: str
    rxnorm: str
    event: str
    ctcae_term: str
    meddra_code: str
    grade: int | None
    negated: bool
    drug_span: Span
    event_span: Span
    medication_request_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "drug": self.drug,
            "rxnorm": self.rxnorm,
            "event": self.event,
            "ctcae_term": self.ctcae_term,
            "meddra_code": self.meddra_code,
            "grade": self.grade,
            "negated": self.negated,
            "drug_span": list(self.drug_span),
            "event_span": list(self.event_span),
            "medication_request_id": self.medication_request_id,
        }


@dataclass(frozen=True)
class ToxicityTruth:
    status: str  # present | absent | not_mentioned
    grade: int | None
    span: Span | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "grade": self.grade, "span": list(self.span) if self.span else None}


@dataclass(frozen=True)
class CombinationTruth:
    drugs: tuple[str, ...]
    label: str  # POS | COMB | NEG
    sentence_span: Span
    drug_spans: tuple[Span, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "drugs": list(self.drugs),
            "label": self.label,
            "sentence_span": list(self.sentence_span),
            "drug_spans": [list(s) for s in self.drug_spans],
        }


@dataclass(frozen=True)
class NoteTruth:
    note_id: str
    patient_id: str
    date: str
    kind: str  # progress | radiotherapy | consult
    text: str
    ades: tuple[AdeTruth, ...]
    toxicities: Mapping[str, ToxicityTruth]
    combinations: tuple[CombinationTruth, ...]
    encounter_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "note_id": self.note_id,
            "patient_id": self.patient_id,
            "date": self.date,
            "kind": self.kind,
            "text": self.text,
            "ades": [a.to_json() for a in self.ades],
            "toxicities": {k: v.to_json() for k, v in self.toxicities.items()},
            "combinations": [c.to_json() for c in self.combinations],
            "encounter_id": self.encounter_id,
        }


@dataclass(frozen=True)
class OverprescriptionTruth:
    patient_id: str
    medication_request_id: str
    drug: str
    rxnorm: str
    reason: str  # duplicate_therapy | no_indication | prior_serious_ade
    encounter_id: str
    date: str

    def to_json(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "medication_request_id": self.medication_request_id,
            "drug": self.drug,
            "rxnorm": self.rxnorm,
            "reason": self.reason,
            "encounter_id": self.encounter_id,
            "date": self.date,
        }


@dataclass(frozen=True)
class VisitPatient:
    age: int
    sex: str
    conditions: tuple[str, ...]
    previous_medications: tuple[str, ...]
    allergies: tuple[str, ...]
    history: str

    def to_json(self) -> dict[str, Any]:
        return {
            "age": self.age,
            "sex": self.sex,
            "conditions": list(self.conditions),
            "previous_medications": list(self.previous_medications),
            "allergies": list(self.allergies),
            "history": self.history,
        }


@dataclass(frozen=True)
class VisitTruth:
    """One prescribing visit in the recommender's format (``visit_id`` is the Encounter id)."""

    visit_id: str
    patient: VisitPatient
    candidates: tuple[str, ...]
    prescribed: tuple[str, ...]
    overprescribed: tuple[str, ...]
    patient_id: str
    date: str
    medication_request_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "visit_id": self.visit_id,
            "patient": self.patient.to_json(),
            "candidates": list(self.candidates),
            "prescribed": list(self.prescribed),
            "overprescribed": list(self.overprescribed),
            "patient_id": self.patient_id,
            "date": self.date,
            "medication_request_ids": list(self.medication_request_ids),
        }


@dataclass(frozen=True)
class Cohort:
    """A generated cohort: FHIR resources (dependency order) and the truth about them."""

    seed: int
    patients: int
    resources: tuple[dict[str, Any], ...]
    notes: tuple[NoteTruth, ...]
    overprescriptions: tuple[OverprescriptionTruth, ...]
    visits: tuple[VisitTruth, ...]
    generator_version: str = GENERATOR_VERSION

    def counts(self) -> dict[str, int]:
        """Resources per type, sorted by type name."""
        counter = Counter(str(r["resourceType"]) for r in self.resources)
        return dict(sorted(counter.items()))

    def manifest(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "patients": self.patients,
            "counts": self.counts(),
            "generator_version": self.generator_version,
            "notes": len(self.notes),
            "overprescriptions": len(self.overprescriptions),
            "visits": len(self.visits),
        }
