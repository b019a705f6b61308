"""Pure translation from model findings to the adapters' write records and the state store's rows.

Deterministic keys: the same finding in the same note always maps to the same key, and so to the same
FHIR identifier, which is what makes a re-run a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters import AdverseEventInput, MedicationOrder, Note
from cds.cohort.codes import DRUGS
from models import AdeFinding, ToxicityFinding

RADIOTHERAPY = "radiotherapy"
_TOXICITY_TERMS = {
    "urinary urgency": ("Urinary urgency", "10046593"),
    "urinary frequency": ("Urinary frequency", "10046539"),
    "cystitis noninfective": ("Cystitis noninfective", "10011796"),
    "hematuria": ("Hematuria", "10018867"),
    "urinary incontinence": ("Urinary incontinence", "10046543"),
    "urinary retention": ("Urinary retention", "10046555"),
    "urinary tract pain": ("Urinary tract pain", "10046571"),
    "proctitis": ("Proctitis", "10036774"),
    "diarrhea": ("Diarrhea", "10012735"),
    "rectal hemorrhage": ("Rectal hemorrhage", "10038063"),
    "fatigue": ("Fatigue", "10016256"),
    "erectile dysfunction": ("Erectile dysfunction", "10061461"),
}


@dataclass(frozen=True)
class DrugIdentity:
    ingredient: str
    rxnorm: str | None
    display: str


def _brand_index() -> dict[str, DrugIdentity]:
    index: dict[str, DrugIdentity] = {}
    for drug in DRUGS.values():
        identity = DrugIdentity(drug.name, drug.rxnorm, drug.name)
        index[drug.name.lower()] = identity
        for brand in drug.brands:
            index[brand.lower()] = identity
    return index


_DRUG_INDEX = _brand_index()


def identify_drug(surface: str) -> DrugIdentity:
    """Ingredient and RxNorm for a drug mention; unknown drugs keep their lower-cased text and no code."""
    text = " ".join(surface.lower().split()).strip(".,;:()")
    found = _DRUG_INDEX.get(text)
    if found is not None:
        return found
    for name, identity in _DRUG_INDEX.items():
        if name in text.split() or text.startswith(name + " "):
            return identity
    return DrugIdentity(text, None, text)


def finding_key(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join((kind, *parts)).encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


def note_date(note: Note) -> datetime:
    when = note.date or note.last_updated or datetime.now(UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def suspect_order(
    orders: Sequence[MedicationOrder], ingredient: str, when: datetime
) -> MedicationOrder | None:
    """The patient's order for that ingredient closest before the note (else the earliest after it)."""
    matching = [
        o for o in orders
        if (o.ingredient or "").lower() == ingredient or ingredient in (o.display or "").lower()
    ]
    if not matching:
        return None

    def authored(o: MedicationOrder) -> datetime:
        a = o.authored_on or datetime.min.replace(tzinfo=UTC)
        return a if a.tzinfo else a.replace(tzinfo=UTC)

    def rank(o: MedicationOrder) -> tuple[datetime, str]:
        # the id breaks ties, so the choice never depends on the order the server listed the orders in
        return authored(o), o.id

    before = [o for o in matching if authored(o) <= when]
    return max(before, key=rank) if before else min(matching, key=rank)


def ade_inputs(
    note: Note, findings: Sequence[AdeFinding], orders: Sequence[MedicationOrder], model: tuple[str, str]
) -> tuple[list[AdverseEventInput], list[dict[str, Any]]]:
    """AdverseEvents for the non-negated findings, and state rows for all of them (negated ones audited)."""
    events: list[AdverseEventInput] = []
    rows: list[dict[str, Any]] = []
    when = note_date(note)
    patient = note.patient_id or "unknown"
    seen: set[str] = set()
    for f in findings:
        drug = identify_drug(f.drug)
        term = f.ctcae_term or f.event.strip().capitalize()
        if not any(c.isalnum() for c in drug.ingredient) or not any(c.isalnum() for c in term):
            continue  # a span of punctuation or blanks names neither a drug nor an event
        key = finding_key(
            "ade", patient, note.id, drug.ingredient, term.lower(), str(f.grade), str(f.negated)
        )
        if key in seen:
            continue
        seen.add(key)
        order = suspect_order(orders, drug.ingredient, when)
        rows.append({
            "key": key, "kind": "ade", "patient_id": patient, "note_id": note.id, "drug_rxnorm": drug.rxnorm,
            "payload": {
                "drug": drug.ingredient, "drug_display": drug.display, "event": f.event, "ctcae_term": term,
                "meddra_code": f.meddra_code, "grade": f.grade, "negated": f.negated,
                "date": when.date().isoformat(), "event_span": list(f.event_span),
                "medication_request_id": order.id if order else None, "confidence": round(f.confidence, 4),
            },
            "model": f"{model[0]}@{model[1]}", "written": 0,
        })
        if f.negated:
            continue
        events.append(AdverseEventInput(
            finding_key=key, patient_id=patient, note_id=note.id, drug_rxnorm=drug.rxnorm,
            drug_display=drug.display, medication_request_id=order.id if order else None,
            ctcae_term=term, meddra_code=f.meddra_code, grade=f.grade, date=when,
            evidence_text=note.text[f.event_span[0]:f.event_span[1]][:200] or f.event,
            model_name=model[0], model_version=model[1], evidence_start=f.event_span[0],
            evidence_end=f.event_span[1], encounter_id=note.encounter_id,
            serious=(f.grade or 0) >= 3 if f.grade is not None else None,
        ))
    return events, rows


def toxicity_inputs(
    note: Note, findings: Sequence[ToxicityFinding], model: tuple[str, str]
) -> tuple[list[AdverseEventInput], list[dict[str, Any]]]:
    """Radiotherapy toxicities stated as present become AdverseEvents without a drug suspect."""
    events: list[AdverseEventInput] = []
    rows: list[dict[str, Any]] = []
    when = note_date(note)
    patient = note.patient_id or "unknown"
    for f in findings:
        if f.status == "not_mentioned":
            continue
        term, meddra = _TOXICITY_TERMS.get(f.symptom, (f.symptom.capitalize(), None))
        key = finding_key("tox", patient, note.id, f.symptom, str(f.grade), f.status)
        rows.append({
            "key": key, "kind": "toxicity", "patient_id": patient, "note_id": note.id, "drug_rxnorm": None,
            "payload": {"symptom": f.symptom, "status": f.status, "grade": f.grade, "ctcae_term": term,
                        "date": when.date().isoformat(), "confidence": round(f.confidence, 4)},
            "model": f"{model[0]}@{model[1]}", "written": 0,
        })
        if f.status != "present":
            continue
        events.append(AdverseEventInput(
            finding_key=key, patient_id=patient, note_id=note.id, drug_rxnorm=None, drug_display=RADIOTHERAPY,
            medication_request_id=None, ctcae_term=term, meddra_code=meddra, grade=f.grade, date=when,
            evidence_text=None, model_name=model[0], model_version=model[1], encounter_id=note.encounter_id,
            serious=(f.grade or 0) >= 3 if f.grade is not None else None,
        ))
    return events, rows


def combination_rows(note: Note, combos: Sequence[Any], model: tuple[str, str]) -> list[dict[str, Any]]:
    patient = note.patient_id or "unknown"
    rows = []
    for c in combos:
        drugs = sorted(identify_drug(d).ingredient for d in c.drugs)
        rows.append({
            "key": finding_key("combo", patient, note.id, "+".join(drugs), c.label),
            "kind": "combination", "patient_id": patient, "note_id": note.id, "drug_rxnorm": None,
            "payload": {"drugs": drugs, "label": c.label, "confidence": round(c.confidence, 4),
                        "sentence_span": list(c.sentence_span)},
            "model": f"{model[0]}@{model[1]}", "written": 1,
        })
    return rows
