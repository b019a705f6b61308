"""FHIR R4 resources of the synthetic cohort, as plain JSON dicts with stable, non-numeric ids.

Every resource carries the tag ``urn:oncovigil:cohort|synthetic`` so that a server's synthetic
records can always be told apart from real ones.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

from cds.cohort.codes import (
    DRUGS,
    ICD10,
    LOINC,
    LOINC_CONSULT_NOTE,
    LOINC_HER2,
    LOINC_PROGRESS_NOTE,
    RXNORM,
    SNOMED,
    SNOMED_NEGATIVE,
    SNOMED_POSITIVE,
    SNOMED_TELERADIOTHERAPY,
)

Resource = dict[str, Any]
TAG = {"system": "urn:oncovigil:cohort", "code": "synthetic", "display": "OncoVigil synthetic cohort"}


def _ref(kind: str, ident: str) -> dict[str, str]:
    return {"reference": f"{kind}/{ident}"}


def _meta() -> dict[str, Any]:
    return {"tag": [dict(TAG)]}


def instant(day: date, hour: int, minute: int = 0) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z"


def patient(pid: str, index: int, given: str, family: str, sex: str, birth: date) -> Resource:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": _meta(),
        "identifier": [{"system": "urn:oncovigil:synthetic-mrn", "value": f"SYN-{index:04d}"}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given], "text": f"{given} {family}"}],
        "gender": sex,
        "birthDate": birth.isoformat(),
    }


def condition(
    cid: str, pid: str, snomed: tuple[str, str], icd10: str, text: str, onset: date, stage: str | None = None
) -> Resource:
    res: Resource = {
        "resourceType": "Condition",
        "id": cid,
        "meta": _meta(),
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                        "display": "Problem List Item",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": SNOMED, "code": snomed[0], "display": snomed[1]},
                {"system": ICD10, "code": icd10},
            ],
            "text": text,
        },
        "subject": _ref("Patient", pid),
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
    }
    if stage:
        res["stage"] = [{"summary": {"text": stage}}]
    return res


def her2_observation(oid: str, pid: str, positive: bool, day: date) -> Resource:
    value = SNOMED_POSITIVE if positive else SNOMED_NEGATIVE
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": _meta(),
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": LOINC, "code": LOINC_HER2[0], "display": LOINC_HER2[1]}],
            "text": "HER2",
        },
        "subject": _ref("Patient", pid),
        "effectiveDateTime": day.isoformat(),
        "valueCodeableConcept": {
            "coding": [{"system": SNOMED, "code": value[0], "display": value[1]}],
            "text": "positive" if positive else "negative",
        },
    }


def allergy(aid: str, pid: str, substance: str, day: date) -> Resource:
    return {
        "resourceType": "AllergyIntolerance",
        "id": aid,
        "meta": _meta(),
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
        "code": {"text": substance},
        "patient": _ref("Patient", pid),
        "recordedDate": day.isoformat(),
    }


def encounter(eid: str, pid: str, kind_text: str, day: date, hour: int, reason: tuple[str, str]) -> Resource:
    # reasonCode, not reasonReference: bulk loaders write Encounters before Conditions (Synthea's
    # Conditions point at their Encounter), so a Condition reference here would dangle mid-load.
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": _meta(),
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "type": [{"text": kind_text}],
        "subject": _ref("Patient", pid),
        "period": {"start": instant(day, hour), "end": instant(day, hour + 1)},
        "reasonCode": [{"coding": [{"system": SNOMED, "code": reason[0], "display": reason[1]}]}],
    }


def medication_request(
    mid: str,
    pid: str,
    drug: str,
    status: str,
    eid: str,
    day: date,
    hour: int,
    condition_id: str | None,
    reason_text: str | None,
) -> Resource:
    info = DRUGS[drug]
    res: Resource = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "meta": _meta(),
        "status": status,
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                        "code": "outpatient",
                    }
                ]
            }
        ],
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": info.rxnorm, "display": drug}],
            "text": drug,
        },
        "subject": _ref("Patient", pid),
        "encounter": _ref("Encounter", eid),
        "authoredOn": instant(day, hour, 30),
        "dosageInstruction": [{"text": info.dose}],
    }
    if condition_id is not None:
        res["reasonReference"] = [_ref("Condition", condition_id)]
    if reason_text is not None:
        res["reasonCode"] = [{"text": reason_text}]
    return res


def radiotherapy(
    prid: str, pid: str, site: str, dose_gy: float, fractions: int, start: date, end: date, condition_id: str
) -> Resource:
    return {
        "resourceType": "Procedure",
        "id": prid,
        "meta": _meta(),
        "status": "completed",
        "code": {
            "coding": [{"system": SNOMED, "code": SNOMED_TELERADIOTHERAPY[0], "display": SNOMED_TELERADIOTHERAPY[1]}],
            "text": f"External beam radiotherapy to the {site}, {dose_gy:g} Gy in {fractions} fractions",
        },
        "subject": _ref("Patient", pid),
        "performedPeriod": {"start": instant(start, 8), "end": instant(end, 9)},
        "reasonReference": [_ref("Condition", condition_id)],
        "bodySite": [{"text": site}],
    }


def document_reference(
    nid: str, pid: str, eid: str, kind: str, title: str, text: str, day: date, hour: int
) -> Resource:
    code = LOINC_CONSULT_NOTE if kind == "consult" else LOINC_PROGRESS_NOTE
    return {
        "resourceType": "DocumentReference",
        "id": nid,
        "meta": _meta(),
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}], "text": code[1]},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "code": "clinical-note",
                        "display": "Clinical Note",
                    }
                ]
            }
        ],
        "subject": _ref("Patient", pid),
        "date": instant(day, hour, 45),
        "description": title,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                    "title": title,
                }
            }
        ],
        "context": {
            "encounter": [_ref("Encounter", eid)],
            "period": {"start": instant(day, hour), "end": instant(day, hour + 1)},
        },
    }
