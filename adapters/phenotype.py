"""Cancer phenotype write-back: mCODE-aligned Observations (stage group with TNM components, tumour markers).

Each Observation lives at a deterministic logical id (``ov-obs-<digest of its key>``) and is written with
``PUT`` (update-as-create), like AdverseEvent: the key is (patient, note, field), so a re-run with the same
value creates no new version, and a re-extracted note with a changed value replaces it. A Provenance (by
content digest, conditional create) names the Device of the model version that read the note.

Aligned with mCODE, not claiming its profiles: mCODE's stage and tumour-marker profiles expect
``status`` final/amended and clinician-verified data, whereas these are machine-extracted, so
``status`` is ``preliminary`` and no ``meta.profile`` is asserted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.build import GENERATED_TAG, check_key
from adapters.client import FhirClient
from adapters.fhirtime import format_datetime
from adapters.identifiers import OV, device_key, logical_id, placeholder
from adapters.records import WriteReport
from adapters.validation import validated
from adapters.writer import PlannedItem, plan_all, provenance_entry, write_planned

SID_PHENOTYPE = f"{OV}/sid/phenotype-observation"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"

Coding = tuple[str, str, str]  # (system, code, display)
Resource = dict[str, Any]


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
    components: tuple[tuple[Coding, str], ...] = ()  # (code, value text), e.g. the T, N and M categories
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
            {"code": _concept(code, code[2]), "valueCodeableConcept": {"text": value}}
            for code, value in item.components
        ]
    return resource


def plan_phenotype_observation(item: PhenotypeObservationInput, recorded: datetime) -> PlannedItem:
    device_url = placeholder("device", device_key(item.model_name, item.model_version))
    resource = validated(phenotype_observation_resource(item, device_url), placeholders={device_url: "Device"})
    target = f"Observation/{resource['id']}"
    entry = {"resource": resource, "request": {"method": "PUT", "url": target}}
    sources = [f"DocumentReference/{item.note_id}"] if item.note_id else []
    prov = provenance_entry("obs", item.key, resource, target, device_url, sources, recorded)
    return PlannedItem(item.key, "Observation", (item.model_name, item.model_version), (entry, prov))


async def write_phenotype_observations(
    client: FhirClient,
    items: Iterable[PhenotypeObservationInput],
    *,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Write phenotype Observations (with Device and Provenance); a re-run with the same values writes nothing."""
    return await write_planned(client, plan_all(items, plan_phenotype_observation, recorded), batch_size)
