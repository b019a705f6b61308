"""Domain -> FHIR R4 resources: validated before they leave, deterministic, and readable back."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from adapters import (
    AdeSummaryInput,
    AdverseEventInput,
    DetectedIssueInput,
    ResourceBuildError,
    parse_adverse_events,
    parse_detected_issues,
    parse_prefetch,
)
from adapters.build import adverse_event_resource, seriousness
from adapters.client import bundle_is_idempotent
from adapters.identifiers import EXT_CTCAE_GRADE, EXT_SUSPECT_REQUEST, MEDDRA, SID_ADVERSE_EVENT
from adapters.validation import validated
from adapters.writer import (
    _bundle,
    plan_ade_summary,
    plan_adverse_event,
    plan_detected_issue,
    plan_detected_issue_withdrawal,
)

WHEN = datetime(2024, 5, 2, 9, 30, tzinfo=UTC)

AE = AdverseEventInput(
    finding_key="note-n1|paclitaxel|10034620",
    patient_id="p1",
    note_id="n1",
    drug_rxnorm="583214",
    drug_display="PACLitaxel 100 MG Injection",
    medication_request_id="mr1",
    ctcae_term="Peripheral sensory neuropathy",
    meddra_code="10034620",
    grade=3,
    date=WHEN,
    evidence_text="numbness and tingling in both hands",
    model_name="ade-extractor.v1",
    model_version="1.0.0",
    evidence_start=12,
    evidence_end=47,
)
DI = DetectedIssueInput(
    key="mr1|recommender.v1|1.0.0",
    patient_id="p1",
    medication_request_id="mr1",
    drug_rxnorm="583214",
    drug_display="PACLitaxel 100 MG Injection",
    severity="high",
    detail="Paclitaxel is likely overprescribed for this patient (score 0.91).",
    identified=WHEN,
    model_name="recommender.v1",
    model_version="1.0.0",
    score=0.91,
    evidence_refs=("AdverseEvent/ov-ae-1",),
)
SUMMARY = AdeSummaryInput(
    key="583214|2024-05",
    drug_rxnorm="583214",
    drug_display="PACLitaxel 100 MG Injection",
    period_start=date(2024, 5, 1),
    period_end=date(2024, 5, 31),
    markdown="# Paclitaxel, May 2024\n\n- Peripheral sensory neuropathy: 3 patients (grade 3: 1)\n",
    model_name="summarizer.v1",
    model_version="1.0.0",
)


def test_adverse_event_is_valid_r4_and_deterministic() -> None:
    first = plan_adverse_event(AE, WHEN)
    again = plan_adverse_event(AE, datetime(2030, 1, 1, tzinfo=UTC))
    resource = first.entries[0]["resource"]
    assert resource == again.entries[0]["resource"]  # nothing in it depends on when we run
    assert resource["id"].startswith("ov-ae-") and not resource["id"].isdigit() and len(resource["id"]) <= 64
    assert resource["identifier"] == {"system": SID_ADVERSE_EVENT, "value": AE.finding_key}
    assert first.entries[0]["request"] == {"method": "PUT", "url": f"AdverseEvent/{resource['id']}"}
    other = plan_adverse_event(replace(AE, finding_key="note-n2|paclitaxel|10034620"), WHEN)
    assert other.entries[0]["resource"]["id"] != resource["id"]

    assert resource["event"]["coding"] == [
        {"system": MEDDRA, "code": "10034620", "display": "Peripheral sensory neuropathy"}
    ]
    assert resource["severity"]["coding"][0]["code"] == "severe"
    assert resource["seriousness"]["coding"][0]["code"] == "Serious"
    assert {"url": EXT_CTCAE_GRADE, "valueInteger": 3} in resource["extension"]
    suspect = resource["suspectEntity"][0]
    assert suspect["instance"]["reference"] == "#suspect-drug"
    assert resource["contained"][0]["code"]["coding"][0]["code"] == "583214"
    assert suspect["extension"] == [
        {"url": EXT_SUSPECT_REQUEST, "valueReference": {"reference": "MedicationRequest/mr1"}}
    ]
    assert resource["referenceDocument"] == [{"reference": "DocumentReference/n1"}]
    assert resource["contributor"][0]["reference"].startswith("urn:uuid:")
    provenance = first.entries[1]["resource"]
    assert provenance["target"] == [{"reference": f"AdverseEvent/{resource['id']}"}]
    assert provenance["entity"] == [{"role": "source", "what": {"reference": "DocumentReference/n1"}}]


def test_suspect_is_the_server_medication_when_known() -> None:
    resource = plan_adverse_event(replace(AE, medication_id="med9"), WHEN).entries[0]["resource"]
    assert resource["suspectEntity"][0]["instance"]["reference"] == "Medication/med9"
    assert "contained" not in resource


def test_r4_reference_rules_are_enforced_before_sending() -> None:
    bad = adverse_event_resource(AE, "Device/d1")
    bad["suspectEntity"][0]["instance"] = {"reference": "MedicationRequest/mr1"}
    with pytest.raises(ResourceBuildError) as caught:
        validated(bad)
    assert caught.value.code == "OV-1082" and "MedicationRequest is not allowed" in str(caught.value)
    recorder = adverse_event_resource(AE, "Device/d1")
    recorder["recorder"] = {"reference": "Device/d1"}
    with pytest.raises(ResourceBuildError, match=r"OV-1082.*AdverseEvent\.recorder: Device is not allowed"):
        validated(recorder)
    structure = adverse_event_resource(AE, "Device/d1")
    del structure["subject"]  # required in R4
    with pytest.raises(ResourceBuildError) as invalid:
        validated(structure)
    assert invalid.value.code == "OV-1080"


@pytest.mark.parametrize("key", ["", "has space", "x" * 201])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ResourceBuildError) as caught:
        plan_adverse_event(replace(AE, finding_key=key), WHEN)
    assert caught.value.code == "OV-1083"


def test_grade_outside_ctcae_is_refused() -> None:
    with pytest.raises(ResourceBuildError, match=r"^OV-1084: CTCAE grade 6 is outside 1\.\.5"):
        plan_adverse_event(replace(AE, grade=6), WHEN)


def test_seriousness_follows_the_grade_unless_told() -> None:
    assert seriousness(1, None) == ("Non-serious", "Non-serious")
    assert seriousness(3, None) == ("Serious", "Serious")
    assert seriousness(4, None)[0] == "SeriousIsLifeThreatening"  # type: ignore[index]
    assert seriousness(5, None)[0] == "SeriousResultsInDeath"  # type: ignore[index]
    assert seriousness(None, None) is None
    assert seriousness(1, True) == ("Serious", "Serious")
    assert seriousness(4, False) == ("Non-serious", "Non-serious")


def test_detected_issue_and_summary() -> None:
    issue = plan_detected_issue(DI, WHEN)
    resource = issue.entries[0]["resource"]
    assert issue.entries[0]["request"] == {
        "method": "PUT",
        "url": "DetectedIssue?identifier=https://oncovigil.org/fhir/sid/detected-issue|mr1%7Crecommender.v1%7C1.0.0",
    }
    assert resource["implicated"][0]["reference"] == "MedicationRequest/mr1"
    assert resource["severity"] == "high" and resource["author"]["reference"].startswith("urn:uuid:")
    assert resource["evidence"] == [{"detail": [{"reference": "AdverseEvent/ov-ae-1"}]}]

    summary = plan_ade_summary(SUMMARY, WHEN)
    doc = summary.entries[0]["resource"]
    assert summary.entries[0]["request"]["method"] == "PUT"
    assert summary.entries[0]["request"]["url"].startswith("DocumentReference?identifier=")
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "text/markdown; charset=utf-8"
    assert base64.b64decode(attachment["data"]).decode() == SUMMARY.markdown
    assert doc["context"]["period"] == {"start": "2024-05-01", "end": "2024-05-31"}


def test_write_bundles_are_safe_to_replay() -> None:
    bundle, devices = _bundle(
        [plan_adverse_event(AE, WHEN), plan_detected_issue(DI, WHEN), plan_ade_summary(SUMMARY, WHEN)]
    )
    assert devices == 3  # three models, three Devices, each a conditional create
    assert bundle_is_idempotent(bundle)
    assert not bundle_is_idempotent({"entry": [{"request": {"method": "POST", "url": "Patient"}}]})


def test_written_adverse_events_read_back() -> None:
    resource = plan_adverse_event(AE, WHEN).entries[0]["resource"]
    [record] = parse_adverse_events({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": resource}]})
    assert (record.drug_rxnorm, record.drug_display, record.medication_request_id) == (
        "583214",
        "PACLitaxel 100 MG Injection",
        "mr1",
    )
    assert (record.ctcae_term, record.meddra_code, record.grade, record.note_id) == (
        "Peripheral sensory neuropathy",
        "10034620",
        3,
        "n1",
    )
    assert record.date == WHEN and record.serious is True and record.severity == "severe"
    assert record.finding_key == AE.finding_key and record.generated_by_oncovigil


def test_prefetch_is_parsed_by_resource_type() -> None:
    ae = plan_adverse_event(AE, WHEN).entries[0]["resource"]
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"},
        "medications": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "mr1",
                        "status": "active",
                        "intent": "order",
                        "medicationReference": {"reference": "Medication/m1"},
                    }
                },
                {
                    "resource": {
                        "resourceType": "Medication",
                        "id": "m1",
                        "code": {
                            "coding": [
                                {
                                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                    "code": "1736854",
                                    "display": "cisplatin 50 MG Injection",
                                }
                            ]
                        },
                    },
                    "search": {"mode": "include"},
                },
            ],
        },
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Condition",
                        "id": "c1",
                        "clinicalStatus": {"coding": [{"code": "active"}]},
                        "code": {"text": "NSCLC"},
                    }
                },
                {
                    "resource": {
                        "resourceType": "Condition",
                        "id": "c2",
                        "clinicalStatus": {"coding": [{"code": "resolved"}]},
                        "code": {"text": "Flu"},
                    }
                },
            ],
        },
        "allergies": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": {"resourceType": "AllergyIntolerance", "id": "a1", "code": {"text": "Penicillin"}}}],
        },
        "adverseEvents": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": ae}]},
        "encounter": None,
    }
    parsed = parse_prefetch(prefetch)
    assert parsed.missing == ("encounter",)
    assert parsed.patient is not None and parsed.patient.sex == "male"
    assert [c.id for c in parsed.conditions] == ["c1"]
    assert [(m.id, m.rxnorm_code, m.ingredient) for m in parsed.medications] == [("mr1", "1736854", "cisplatin")]
    assert parsed.allergies == ["Penicillin"]
    assert [e.grade for e in parsed.adverse_events] == [3]
    context = parsed.context(date(2024, 1, 1))
    assert context is not None and context.age == 74 and context.recent_notes == []
    assert parse_prefetch(None).patient is None


def test_several_implicated_orders_and_a_withdrawal() -> None:
    both = plan_detected_issue(replace(DI, also_implicated=("mr2",)), WHEN).entries[0]["resource"]
    assert [i["reference"] for i in both["implicated"]] == ["MedicationRequest/mr1", "MedicationRequest/mr2"]
    [issue] = parse_detected_issues(both)
    assert issue.medication_request_ids == ("mr1", "mr2") and issue.key == DI.key and issue.score == 0.91

    on_server = {
        **both,
        "id": "di-7",
        "author": {"reference": "Device/d1"},
        "meta": {**both["meta"], "versionId": "3", "lastUpdated": "2024-05-03T10:00:00Z"},
    }
    withdrawal = plan_detected_issue_withdrawal(on_server, "rules", "1", WHEN)
    entry, provenance = withdrawal.entries
    assert entry["request"] == {"method": "PUT", "url": "DetectedIssue/di-7"}
    assert entry["resource"]["status"] == "cancelled" and "versionId" not in entry["resource"]["meta"]
    assert {k: v for k, v in entry["resource"].items() if k not in ("status", "meta")} == {
        k: v for k, v in on_server.items() if k not in ("status", "meta")
    }
    assert provenance["resource"]["activity"]["coding"][0]["code"] == "CANCEL"
    assert provenance["resource"]["target"] == [{"reference": "DetectedIssue/di-7"}]
    assert bundle_is_idempotent(_bundle([withdrawal])[0])
    foreign = {**on_server, "identifier": [{"system": "https://other.example/sid", "value": "x"}]}
    with pytest.raises(ResourceBuildError, match="OV-0100"):
        plan_detected_issue_withdrawal(foreign, "rules", "1", WHEN)


def test_an_adverse_event_withdrawal_marks_it_entered_in_error_and_readers_skip_it() -> None:
    from adapters.identifiers import ENTERED_IN_ERROR, EXT_R5_ADVERSE_EVENT_STATUS
    from adapters.writer import plan_adverse_event_withdrawal

    device = "urn:uuid:00000000-0000-0000-0000-000000000001"
    on_server = {**adverse_event_resource(AE, device), "meta": {"versionId": "1", "tag": [{"code": "generated"}]}}
    on_server["contributor"] = [{"reference": "Device/7"}]
    withdrawal = plan_adverse_event_withdrawal(on_server, "ade-extractor.v1", "1+6c9dca3b", WHEN)
    entry, provenance = withdrawal.entries
    assert entry["request"] == {"method": "PUT", "url": f"AdverseEvent/{on_server['id']}"}
    marked = entry["resource"]
    assert marked["meta"] == {"tag": [{"code": "generated"}]}  # the server's versionId is not sent back
    statuses = [x for x in marked["extension"] if x["url"] == EXT_R5_ADVERSE_EVENT_STATUS]
    assert statuses == [{"url": EXT_R5_ADVERSE_EVENT_STATUS, "valueCode": ENTERED_IN_ERROR}]
    assert {x["url"] for x in marked["extension"]} >= {EXT_CTCAE_GRADE}  # the rest is kept as read
    assert marked["event"] == on_server["event"] and marked["suspectEntity"] == on_server["suspectEntity"]
    assert provenance["resource"]["activity"]["coding"][0]["code"] == "NULLIFY"

    again = plan_adverse_event_withdrawal(marked, "ade-extractor.v1", "1+6c9dca3b", WHEN)  # one mark, not two
    assert again.entries[0]["resource"] == marked

    assert parse_adverse_events([on_server]) and parse_adverse_events([marked]) == []
    foreign = {**on_server, "identifier": {"system": "urn:other", "value": "x"}}
    with pytest.raises(ResourceBuildError, match="OV-1089"):
        plan_adverse_event_withdrawal(foreign, "ade-extractor.v1", "1", WHEN)
