"""Patient context and Synthea bulk load against the HAPI sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from adapters_testkit import FaultyTransport, note, order, patient

from adapters import FhirClient, FhirClientConfig, fetch_patient_context, load_resources, read_ndjson_dir

pytestmark = pytest.mark.sandbox

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea_bulk_10"
SMALL_PATIENT = "cbc86e51-9eca-3855-76ec-c058f72c5761"  # 15 notes, 4 orders
SHARED_TYPES = ("Organization", "Location", "Practitioner", "PractitionerRole")


def condition(cid: str, pid: str, text: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254637007", "display": text}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


def allergy(aid: str, pid: str, text: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": aid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": status}]
        },
        "code": {"text": text},
        "patient": {"reference": f"Patient/{pid}"},
    }


async def test_patient_context_in_one_call_with_bounded_concurrency(
    fhir: FhirClient, sandbox_config: FhirClientConfig, run_id: str
) -> None:
    pid = f"{run_id}-pat"
    await load_resources(
        fhir,
        [
            patient(pid, birth="1960-06-15", gender="male"),
            condition(f"{run_id}-c1", pid, "Non-small cell lung cancer", "active"),
            condition(f"{run_id}-c2", pid, "Acute bronchitis", "resolved"),
            allergy(f"{run_id}-a1", pid, "Penicillin"),
            allergy(f"{run_id}-a2", pid, "Latex", status="inactive"),
            order(f"{run_id}-o1", pid, "1736854", "cisplatin 50 MG Injection", authored="2020-01-01"),
            order(
                f"{run_id}-o2", pid, "583214", "PACLitaxel 100 MG Injection", status="stopped", authored="2024-05-20"
            ),
            order(
                f"{run_id}-o3", pid, "310965", "Ibuprofen 200 MG Oral Tablet", status="stopped", authored="2019-01-01"
            ),
            note(f"{run_id}-n1", pid, "Recent: grade 2 neuropathy.", date="2024-05-25T09:00:00Z"),
            note(f"{run_id}-n2", pid, "Older version.", status="superseded", date="2024-05-26T09:00:00Z"),
            note(f"{run_id}-n3", pid, "Years ago.", date="2019-05-25T09:00:00Z"),
        ],
    )
    transport = FaultyTransport(lambda request, n: None)
    async with FhirClient(sandbox_config, transport=transport) as client:
        context = await fetch_patient_context(
            client, pid, now=datetime(2024, 6, 1, tzinfo=UTC), recent_days=90, concurrency=2
        )
    assert (context.patient_id, context.age, context.sex) == (pid, 63, "male")
    assert [c.display for c in context.conditions] == ["Non-small cell lung cancer"]
    assert context.allergies == ["Penicillin"]
    assert [m.id for m in context.medications] == [f"{run_id}-o2", f"{run_id}-o1"]  # recent first, then active
    assert [n.id for n in context.recent_notes] == [f"{run_id}-n1"]
    assert 1 < transport.max_in_flight <= 2


async def test_synthea_subset_loads_and_reloads_without_changes(
    fhir: FhirClient, prerequisite: Callable[[bool, str], None]
) -> None:
    prerequisite(SYNTHEA.is_dir(), "needs ../shared/data/synthea_bulk_10")
    def subset() -> Iterator[dict[str, Any]]:
        for resource in read_ndjson_dir(SYNTHEA):
            owner = json.dumps(resource.get("subject") or resource.get("patient") or {})
            shared = resource["resourceType"] in SHARED_TYPES
            if shared or resource.get("id") == SMALL_PATIENT or SMALL_PATIENT in owner:
                yield resource

    first = await load_resources(fhir, subset())
    assert first.by_type["DocumentReference"].sent == 15 and first.by_type["MedicationRequest"].sent == 4
    scope = {"patient": f"Patient/{SMALL_PATIENT}"}
    counts = {t: await fhir.count(t, scope) for t in ("DocumentReference", "MedicationRequest", "Encounter")}
    assert counts["DocumentReference"] == 15 and counts["MedicationRequest"] == 4

    second = await load_resources(fhir, subset())
    assert second.created == 0 and second.sent == first.sent
    assert {t: await fhir.count(t, scope) for t in counts} == counts
    # An identical PUT creates no new version, even where HAPI resolved an inline match-URL reference.
    async for request in fhir.search("MedicationRequest", scope):
        assert request["meta"]["versionId"] == "1"
        assert request["requester"]["reference"].startswith("Practitioner/")
