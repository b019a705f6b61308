"""Cancer phenotype write-back: mCODE-aligned Observations (stage group with TNM components, tumour markers)
and one primary cancer Condition per patient and diagnosis.

Each Observation lives at a deterministic logical id (``ov-obs-<digest of its key>``) and is written with
``PUT`` (update-as-create), like AdverseEvent: the key is (patient, note, field), so a re-run with the same
value creates no new version, and a re-extracted note with a changed value replaces it. A Provenance (by
content digest, conditional create) names the Device of the model version that read the note.

Aligned with mCODE, not claiming its profiles: mCODE's stage and tumour-marker profiles expect
``status`` final/amended and clinician-verified data, whereas these are machine-extracted, so
``status`` is ``preliminary`` and no ``meta.profile`` is asserted. The primary cancer Condition is ours, next
to the clinician's (never an edit of theirs): ``verificationStatus`` ``unconfirmed``, tagged as generated, with
the notes that state it as evidence and the stage as ``stage.summary``; its id is a digest of (patient,
diagnosis), so each sync replaces it with the newest phenotype instead of adding one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.build import GENERATED_TAG, check_key
from adapters.client import FhirClient
from adapters.errors import ResourceBuildError
from adapters.fhirtime import format_datetime
from adapters.identifiers import ENTERED_IN_ERROR, OV, device_key, logical_id, placeholder
from adapters.records import WriteReport
from adapters.validation import validated
from adapters.writer import PlannedItem, plan_all, plan_put_at_id, plan_put_back, write_planned

SID_PHENOTYPE = f"{OV}/sid/phenotype-observation"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"

Coding = tuple[str, str, str]  # (system, code, display)
Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ObservationComponent:
    """One Observation.component: the T category of a stage, the gene a biomarker test studied."""

    code: Coding
    value_text: str
    value_coding: Coding | None = None


@dataclass(frozen=True, slots=True)
class PhenotypeObservationInput:
    """One extracted phenotype fact of a patient, ready to become an Observation."""

    key: str
    patient_id: str
    note_id: str | None
    code: Coding | None  # None: no standard code we could verify; ``code_text`` alone names it
    code_text: str
    value_text: str
    model_name: str
    model_version: str
    value_coding: Coding | None = None
    components: tuple[ObservationComponent, ...] = ()
    laboratory: bool = False
    effective: datetime | None = None
    evidence_text: str | None = None


def _concept(coding: Coding | None, text: str) -> Resource:
    concept: Resource = {"text": text}
    if coding is not None:
        concept["coding"] = [{"system": coding[0], "code": coding[1], "display": coding[2]}]
    return concept


def phenotype_observation_resource(item: PhenotypeObservationInput, device_ref: str) -> Resource:
    check_key(item.key, "phenotype observation")
    resource: Resource = {
        "resourceType": "Observation",
        "id": logical_id("obs", item.key),
        "meta": {"tag": [GENERATED_TAG]},
        "identifier": [{"system": SID_PHENOTYPE, "value": item.key}],
        "status": "preliminary",
        "code": _concept(item.code, item.code_text),
        "subject": {"reference": f"Patient/{item.patient_id}"},
        "valueCodeableConcept": _concept(item.value_coding, item.value_text),
        "device": {"reference": device_ref, "display": f"OncoVigil {item.model_name} {item.model_version}"},
    }
    if item.laboratory:
        resource["category"] = [{"coding": [{"system": CATEGORY_SYSTEM, "code": "laboratory"}]}]
    if item.effective is not None:
        resource["effectiveDateTime"] = format_datetime(item.effective)
    if item.note_id:
        resource["derivedFrom"] = [{"reference": f"DocumentReference/{item.note_id}"}]
    if item.evidence_text:
        resource["note"] = [{"text": f"Stated in the note as: {item.evidence_text}"}]
    if item.components:
        resource["component"] = [
            {"code": _concept(c.code, c.code[2]), "valueCodeableConcept": _concept(c.value_coding, c.value_text)}
            for c in item.components
        ]
    return resource


def plan_phenotype_observation(item: PhenotypeObservationInput, recorded: datetime) -> PlannedItem:
    device_url = placeholder("device", device_key(item.model_name, item.model_version))
    resource = validated(phenotype_observation_resource(item, device_url), placeholders={device_url: "Device"})
    sources = [f"DocumentReference/{item.note_id}"] if item.note_id else []
    model = (item.model_name, item.model_version)
    return plan_put_at_id("obs", item.key, resource, device_url, sources, model, recorded)


async def write_phenotype_observations(
    client: FhirClient,
    items: Iterable[PhenotypeObservationInput],
    *,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Write phenotype Observations (with Device and Provenance); a re-run with the same values writes nothing."""
    return await write_planned(client, plan_all(items, plan_phenotype_observation, recorded), batch_size)


def _our_key(observation: Resource) -> str | None:
    return next(
        (str(i.get("value")) for i in observation.get("identifier") or [] if i.get("system") == SID_PHENOTYPE), None
    )


def plan_observation_withdrawal(
    current: Resource, model_name: str, model_version: str, recorded: datetime
) -> PlannedItem:
    """``current`` (ours, as read) with status ``entered-in-error``, PUT at its id, and a NULLIFY Provenance."""
    key = _our_key(current)
    if not key or current.get("resourceType") != "Observation" or not current.get("id"):
        raise ResourceBuildError(
            "OV-1088", "only a phenotype Observation we wrote (our identifier system) can be withdrawn; fix the caller"
        )
    changes = {"status": ENTERED_IN_ERROR}
    return plan_put_back("obs", key, current, changes, (model_name, model_version), recorded, "NULLIFY")


async def withdraw_lost_observations(
    client: FhirClient,
    note_id: str,
    keep: Collection[str],
    *,
    model_name: str,
    model_version: str,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Our phenotype Observations derived from a re-read note whose keys are not in ``keep`` (the note states the
    field no more) are set to ``entered-in-error``; ones already so are left alone."""
    params = [("derived-from", f"DocumentReference/{note_id}")]
    stale = [
        o
        async for o in client.search("Observation", params)
        if (key := _our_key(o)) is not None and key not in keep and o.get("status") != ENTERED_IN_ERROR
    ]
    when = recorded or datetime.now(UTC)
    planned = [plan_observation_withdrawal(o, model_name, model_version, when) for o in stale]
    return await write_planned(client, planned, batch_size)


CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
SID_PRIMARY_CANCER = f"{OV}/sid/primary-cancer-condition"


@dataclass(frozen=True, slots=True)
class PrimaryCancerConditionInput:
    """A patient's primary cancer as read from their notes (newest statement of each field wins)."""

    key: str
    patient_id: str
    code: Coding | None
    code_text: str
    model_name: str
    model_version: str
    evidence_note_ids: tuple[str, ...]
    body_site_text: str | None = None
    histology_text: str | None = None
    stage_text: str | None = None
    recorded: datetime | None = None


def primary_cancer_condition_resource(item: PrimaryCancerConditionInput) -> Resource:
    check_key(item.key, "primary cancer condition")
    resource: Resource = {
        "resourceType": "Condition",
        "id": logical_id("pcc", item.key),
        "meta": {"tag": [GENERATED_TAG]},
        "identifier": [{"system": SID_PRIMARY_CANCER, "value": item.key}],
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "unconfirmed"}]},
        "code": _concept(item.code, item.code_text),
        "subject": {"reference": f"Patient/{item.patient_id}"},
        "note": [{"text": f"Read from clinical notes by OncoVigil {item.model_name} {item.model_version}; "
                          "not confirmed by a clinician."}],
    }
    if item.body_site_text:
        resource["bodySite"] = [{"text": item.body_site_text}]
    if item.histology_text or item.stage_text:
        resource["stage"] = [{"summary": {"text": item.stage_text or "not stated"}}]
    if item.histology_text:
        resource["note"].append({"text": f"Histology stated in the notes: {item.histology_text}"})
    if item.recorded is not None:
        resource["recordedDate"] = format_datetime(item.recorded)
    if item.evidence_note_ids:
        resource["evidence"] = [
            {"detail": [{"reference": f"DocumentReference/{n}"} for n in item.evidence_note_ids]}
        ]
    return resource


def plan_primary_cancer_condition(item: PrimaryCancerConditionInput, recorded: datetime) -> PlannedItem:
    device_url = placeholder("device", device_key(item.model_name, item.model_version))
    resource = validated(primary_cancer_condition_resource(item))
    sources = [f"DocumentReference/{n}" for n in item.evidence_note_ids]
    model = (item.model_name, item.model_version)
    return plan_put_at_id("pcc", item.key, resource, device_url, sources, model, recorded)


async def write_primary_cancer_conditions(
    client: FhirClient,
    items: Iterable[PrimaryCancerConditionInput],
    *,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Write (replace) each patient's primary cancer Condition; unchanged content writes nothing new."""
    return await write_planned(client, plan_all(items, plan_primary_cancer_condition, recorded), batch_size)
