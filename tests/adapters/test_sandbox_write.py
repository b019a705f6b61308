"""Write-back against the HAPI sandbox: every resource passes $validate, a re-run changes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from adapters_testkit import medication, note, order, patient

from adapters import (
    AdeSummaryInput,
    AdverseEventInput,
    DetectedIssueInput,
    FhirClient,
    fetch_adverse_events,
    load_resources,
    write_ade_summaries,
    write_adverse_events,
    write_detected_issues,
)

pytestmark = pytest.mark.sandbox

WRITTEN_TYPES = ("AdverseEvent", "DetectedIssue", "DocumentReference", "Provenance", "Device")


async def counts(fhir: FhirClient) -> dict[str, int]:
    return {t: await fhir.count(t) for t in WRITTEN_TYPES}


def inputs(run_id: str, pid: str) -> tuple[list[AdverseEventInput], DetectedIssueInput, AdeSummaryInput]:
    when = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    first = AdverseEventInput(
        finding_key=f"{run_id}|note|paclitaxel|neuropathy",
        patient_id=pid,
        note_id=f"{run_id}-note",
        drug_rxnorm="583214",
        drug_display="PACLitaxel 100 MG Injection",
        medication_request_id=f"{run_id}-mr",
        ctcae_term="Peripheral sensory neuropathy",
        meddra_code="10034620",
        grade=3,
        date=when,
        evidence_text="numbness in both hands",
        model_name=f"ade-extractor-{run_id}",
        model_version="1.0.0",
        evidence_start=0,
        evidence_end=22,
    )
    second = replace(
        first,
        finding_key=f"{run_id}|note|cisplatin|nausea",
        drug_rxnorm="1736854",
        drug_display="cisplatin 50 MG Injection",
        medication_request_id=None,
        medication_id=f"{run_id}-med",
        ctcae_term="Nausea",
        meddra_code="10028813",
        grade=None,
        evidence_text=None,
    )
    issue = DetectedIssueInput(
        key=f"{run_id}|mr|recommender",
        patient_id=pid,
        medication_request_id=f"{run_id}-mr",
        drug_rxnorm="583214",
        drug_display="PACLitaxel 100 MG Injection",
        severity="moderate",
        detail="Paclitaxel looks overprescribed for this patient (score 0.87).",
        identified=when,
        model_name=f"recommender-{run_id}",
        model_version="1.0.0",
        score=0.87,
    )
    summary = AdeSummaryInput(
        key=f"{run_id}|583214|2024-03",
        drug_rxnorm="583214",
        drug_display="PACLitaxel 100 MG Injection",
        period_start=date(2024, 3, 1),
        period_end=date(2024, 3, 31),
        markdown="# Paclitaxel, March 2024\n\n- Peripheral sensory neuropathy: 1 patient (grade 3)\n",
        model_name=f"summarizer-{run_id}",
        model_version="1.0.0",
    )
    return [first, second], issue, summary


async def seed(fhir: FhirClient, run_id: str) -> str:
    pid = f"{run_id}-pat"
    await load_resources(
        fhir,
        [
            patient(pid),
            medication(f"{run_id}-med", "1736854", "cisplatin 50 MG Injection", "Cisplatin"),
            order(f"{run_id}-mr", pid, "583214", "PACLitaxel 100 MG Injection"),
            note(f"{run_id}-note", pid, "Numbness in both hands since the last paclitaxel cycle."),
        ],
    )
    return pid


async def test_write_back_is_valid_and_idempotent(fhir: FhirClient, run_id: str) -> None:
    pid = await seed(fhir, run_id)
    events, issue, summary = inputs(run_id, pid)

    before = await counts(fhir)
    ae_report = await write_adverse_events(fhir, events)
    issue_report = await write_detected_issues(
        fhir, [replace(issue, evidence_refs=(ae_report.references[events[0].finding_key],))]
    )
    summary_report = await write_ade_summaries(fhir, [summary])
    for report in (ae_report, issue_report, summary_report):
        assert report.failures == []
    assert ae_report.created == {"Device": 1, "AdverseEvent": 2, "Provenance": 2}
    assert issue_report.created == {"Device": 1, "DetectedIssue": 1, "Provenance": 1}
    assert summary_report.created == {"Device": 1, "DocumentReference": 1, "Provenance": 1}
    after_first = await counts(fhir)
    assert {t: after_first[t] - before[t] for t in WRITTEN_TYPES} == {
        "AdverseEvent": 2,
        "DetectedIssue": 1,
        "DocumentReference": 1,
        "Provenance": 4,
        "Device": 3,
    }

    # Every resource we wrote passes the server's own $validate.
    written = [
        *ae_report.references.values(),
        *issue_report.references.values(),
        *summary_report.references.values(),
    ]
    resources = [await fhir.read(*ref.split("/")) for ref in written]
    for ref in written:
        async for prov in fhir.search("Provenance", {"target": ref}):
            resources.append(prov)
    device_ids = {
        agent["who"]["reference"] for r in resources if r["resourceType"] == "Provenance" for agent in r["agent"]
    }
    resources += [await fhir.read(*d.split("/")) for d in device_ids]
    assert len(resources) == 4 + 4 + 3  # AE x2, DetectedIssue, summary; their Provenances; three Devices
    for resource in resources:
        verdict = await fhir.validate(resource)
        assert verdict.valid, (resource["resourceType"], [(i.severity, i.diagnostics) for i in verdict.errors])

    # Running the same write-back again leaves the server's counts and versions unchanged.
    again = [
        await write_adverse_events(fhir, events),
        await write_detected_issues(
            fhir, [replace(issue, evidence_refs=(ae_report.references[events[0].finding_key],))]
        ),
        await write_ade_summaries(fhir, [summary]),
    ]
    assert [r.total_created for r in again] == [0, 0, 0]
    assert again[0].references == ae_report.references
    assert await counts(fhir) == after_first
    for ref in ae_report.references.values():
        assert (await fhir.read(*ref.split("/")))["meta"]["versionId"] == "1"

    # A changed summary for the same drug and period replaces the old one (and gets its own Provenance).
    revised = replace(summary, markdown=summary.markdown + "- Nausea: 1 patient\n")
    replaced = await write_ade_summaries(fhir, [revised])
    assert replaced.references == summary_report.references
    doc = await fhir.read(*summary_report.references[summary.key].split("/"))
    assert doc["meta"]["versionId"] == "2"
    final = await counts(fhir)
    assert final["DocumentReference"] == after_first["DocumentReference"]
    assert final["Provenance"] == after_first["Provenance"] + 1

    recorded = {e.finding_key: e for e in await fetch_adverse_events(fhir, pid)}
    assert set(recorded) == {e.finding_key for e in events}
    neuropathy = recorded[events[0].finding_key]
    assert (neuropathy.grade, neuropathy.drug_rxnorm, neuropathy.medication_request_id) == (3, "583214", f"{run_id}-mr")
    nausea = recorded[events[1].finding_key]
    assert (nausea.grade, nausea.drug_rxnorm, nausea.drug_display) == (None, "1736854", "cisplatin 50 MG Injection")


async def test_a_refused_item_keeps_the_server_diagnostics_and_spares_the_others(fhir: FhirClient, run_id: str) -> None:
    pid = await seed(fhir, run_id)
    events, _, _ = inputs(run_id, pid)
    orphan = replace(events[0], finding_key=f"{run_id}|orphan", patient_id=f"{run_id}-nobody")
    report = await write_adverse_events(fhir, [events[0], orphan, events[1]], batch_size=10)
    assert set(report.references) == {events[0].finding_key, events[1].finding_key}
    [failure] = report.failures
    assert failure.key == orphan.finding_key and failure.status in (400, 404, 422)
    assert f"{run_id}-nobody" in failure.diagnostics  # HAPI names the missing reference target


async def test_duplicates_already_on_the_server_are_reported_as_412(fhir: FhirClient, run_id: str) -> None:
    pid = await seed(fhir, run_id)
    _, issue, _ = inputs(run_id, pid)
    # Someone else's plain POSTs left two resources with our identifier: the conditional create must stop.
    twin = {
        "resourceType": "DetectedIssue",
        "status": "final",
        "patient": {"reference": f"Patient/{pid}"},
        "identifier": [{"system": "https://oncovigil.org/fhir/sid/detected-issue", "value": issue.key}],
    }
    for _ in range(2):
        await fhir.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": twin, "request": {"method": "POST", "url": "DetectedIssue"}}],
            }
        )
    report = await write_detected_issues(fhir, [issue])
    [failure] = report.failures
    assert failure.status == 412 and failure.code == "OV-1031"
    assert failure.diagnostics  # HAPI's own words about the multiple matches
    assert (
        await fhir.count("DetectedIssue", {"identifier": f"https://oncovigil.org/fhir/sid/detected-issue|{issue.key}"})
        == 2
    )
