"""FHIR R4 JSON -> records: notes (content types, charsets, status), orders, patients (no server needed)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import FhirClient, FhirClientConfig, note_from_document, order_from_request
from adapters.clinical import allergy_label, condition_from_resource, patient_from_resource
from adapters.notes import note_fields
from adapters.orders import ingredient_from_name
from adapters.text import TextSkip, html_to_text, to_text

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea_bulk_10"


def doc(content: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": "d1",
        "meta": {"versionId": "3", "lastUpdated": "2024-05-01T10:00:00.123+00:00"},
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": "Patient/p1"},
        "date": "2024-04-30T08:00:00-04:00",
        "context": {"encounter": [{"reference": "Encounter/e1"}]},
        "content": content,
        **extra,
    }


def b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode()


@pytest.fixture
async def offline() -> Any:
    # note_from_document only needs the client for attachment.url; these documents carry data inline.
    async with FhirClient(FhirClientConfig("http://unused.test/fhir")) as client:
        yield client


async def test_plain_text_note_with_all_fields(offline: FhirClient) -> None:
    note = await note_from_document(
        doc(
            [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": b64("Grade 2 neuropathy après paclitaxel"),
                    }
                }
            ]
        ),
        offline,
    )
    assert note.text == "Grade 2 neuropathy après paclitaxel"
    assert (note.id, note.patient_id, note.encounter_id) == ("d1", "p1", "e1")
    assert (note.type_code, note.type_display, note.status) == ("11506-3", "Progress note", "current")
    assert note.date == datetime(2024, 4, 30, 12, 0, tzinfo=UTC)
    assert note.version_id == "3" and note.last_updated == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert note.is_current


async def test_declared_charset_is_honoured(offline: FhirClient) -> None:
    latin = doc(
        [{"attachment": {"contentType": "text/plain; charset=ISO-8859-1", "data": b64("fièvre à 39°", "latin-1")}}]
    )
    assert (await note_from_document(latin, offline)).text == "fièvre à 39°"
    # The same bytes read as UTF-8 would be invalid: the charset decides, not a guess.
    wrong = doc([{"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64("fièvre", "latin-1")}}])
    with pytest.raises(TextSkip) as caught:
        await note_from_document(wrong, offline)
    assert caught.value.reason == "undecodable:utf-8"


async def test_html_becomes_plain_text(offline: FhirClient) -> None:
    html = (
        "<html><head><meta charset='windows-1252'><style>p{color:red}</style><title>x</title></head>"
        "<body><h1>Assessment</h1><p>Nausea &amp; vomiting, grade&nbsp;3.</p><ul><li>cisplatin held</li>"
        "<li>ondansetron</li></ul><script>alert(1)</script></body></html>"
    )
    note = await note_from_document(
        doc([{"attachment": {"contentType": "text/html", "data": b64(html, "cp1252")}}]), offline
    )
    assert note.text == "Assessment\n\nNausea & vomiting, grade 3.\n\n- cisplatin held\n- ondansetron"
    assert "alert" not in note.text and "color" not in note.text
    assert note.content_type == "text/html"


async def test_plain_text_is_preferred_over_html_and_pdf(offline: FhirClient) -> None:
    content = [
        {"attachment": {"contentType": "application/pdf", "data": b64("%PDF")}},
        {"attachment": {"contentType": "text/html", "data": b64("<p>html</p>")}},
        {"attachment": {"contentType": "text/plain", "data": b64("plain")}},
    ]
    assert (await note_from_document(doc(content), offline)).text == "plain"


async def test_unsupported_content_is_skipped_with_a_reason(offline: FhirClient) -> None:
    with pytest.raises(TextSkip) as caught:
        await note_from_document(
            doc([{"attachment": {"contentType": "application/pdf", "data": b64("%PDF")}}]), offline
        )
    assert caught.value.reason == "content-type:application/pdf"
    with pytest.raises(TextSkip) as none:
        await note_from_document(doc([]), offline)
    assert none.value.reason == "no-attachment"
    with pytest.raises(TextSkip) as charset:
        to_text(b"x", "text/plain; charset=klingon-8")
    assert charset.value.reason == "unknown-charset:klingon-8"


def test_superseded_and_entered_in_error_are_not_current() -> None:
    fields = note_fields(doc([], status="superseded"))
    assert fields["status"] == "superseded"
    from adapters import Note

    base = {**note_fields(doc([])), "text": "t"}
    assert Note(**base).is_current
    assert not Note(**{**base, "status": "superseded"}).is_current
    assert not Note(**{**base, "status": "entered-in-error"}).is_current
    assert not Note(**{**base, "doc_status": "entered-in-error"}).is_current


def test_html_to_text_keeps_pre_blocks() -> None:
    assert html_to_text("<pre>a  b\nc</pre><p>x   y</p>") == "a  b\nc\n\nx y"


def synthea_request() -> dict[str, Any]:
    with (SYNTHEA / "MedicationRequest.000.ndjson").open() as handle:
        for line in handle:
            request = json.loads(line)
            if request.get("dosageInstruction"):
                return dict(request)
    raise AssertionError("no Synthea MedicationRequest with dosage")


def test_synthea_request_round_trips_through_r4b_unchanged(prerequisite: Callable[[bool, str], None]) -> None:
    prerequisite(SYNTHEA.is_dir(), "needs ../shared/data/synthea_bulk_10")
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    request = synthea_request()
    model = MedicationRequest.model_validate(request)
    assert model.model_dump(mode="json", exclude_none=True, by_alias=True) == request
    assert model.medicationCodeableConcept is not None  # R5 models would drop it silently


def test_order_from_codeable_concept() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "meta": {"lastUpdated": "2024-05-01T10:00:00.000+00:00", "versionId": "1"},
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "583214",
                    "display": "PACLitaxel 100 MG Injection",
                }
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "authoredOn": "2024-04-01",
        "requester": {"reference": "Practitioner/dr1"},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 3.0, "periodUnit": "wk"}},
                "doseAndRate": [{"doseQuantity": {"value": 175.0, "unit": "mg/m2"}}],
            }
        ],
    }
    order = order_from_request(request)
    assert (order.rxnorm_code, order.display, order.ingredient) == (
        "583214",
        "PACLitaxel 100 MG Injection",
        "paclitaxel",
    )
    assert (order.patient_id, order.encounter_id, order.requester) == ("p1", "e1", "Practitioner/dr1")
    assert order.authored_on == datetime(2024, 4, 1, tzinfo=UTC)
    assert order.dosage_text == "175 mg/m2, 1 time(s) per 3 wk"
    assert order.is_active and order.version_id == "1"
    assert order.reasons == ()
    why = {
        **request,
        "reasonCode": [
            {"text": "urinary frequency"},
            {"coding": [{"system": "http://snomed.info/sct", "code": "162116003", "display": "Increased frequency"}]},
            {},
        ],
    }
    assert order_from_request(why).reasons == ("urinary frequency", "Increased frequency")


def test_order_from_referenced_or_contained_medication() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "med1",
        "code": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "309311",
                    "display": "cisplatin 1 MG/ML Injectable Solution",
                }
            ]
        },
        "ingredient": [{"itemCodeableConcept": {"text": "Cisplatin"}}],
    }
    referenced = {
        "resourceType": "MedicationRequest",
        "id": "m2",
        "status": "completed",
        "intent": "order",
        "medicationReference": {"reference": "Medication/med1"},
    }
    order = order_from_request(referenced, {"Medication/med1": medication})
    assert (order.rxnorm_code, order.ingredient, order.medication_id) == ("309311", "cisplatin", "med1")
    assert not order.is_active
    contained = {
        "resourceType": "MedicationRequest",
        "id": "m3",
        "status": "active",
        "intent": "order",
        "contained": [{**medication, "id": "c"}],
        "medicationReference": {"reference": "#c"},
    }
    assert order_from_request(contained).rxnorm_code == "309311"


def test_ingredient_heuristics() -> None:
    assert ingredient_from_name("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet") == "amoxicillin / clavulanate"
    assert ingredient_from_name("1 ML Epoetin Alfa 4000 UNT/ML Injection [Epogen]") == "epoetin alfa"
    assert ingredient_from_name("Camila 28 Day Pack") is None


def test_patient_condition_allergy() -> None:
    patient = patient_from_resource(
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-06-15"}
    )
    assert patient.age_on(datetime(2024, 6, 14).date()) == 63 and patient.age_on(datetime(2024, 6, 15).date()) == 64
    condition = condition_from_resource(
        {
            "resourceType": "Condition",
            "id": "c1",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254637007", "display": "NSCLC"}]},
            "onsetDateTime": "2023-01-02",
        }
    )
    assert (condition.code, condition.display, condition.clinical_status) == ("254637007", "NSCLC", "active")
    assert condition.text is None
    labelled = condition_from_resource(
        {
            "resourceType": "Condition",
            "id": "c2",
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": "254837009", "display": "Malignant neoplasm"}],
                "text": "breast cancer, HER2-positive",
            },
        }
    )
    assert (labelled.display, labelled.text) == ("Malignant neoplasm", "breast cancer, HER2-positive")
    assert allergy_label({"resourceType": "AllergyIntolerance", "code": {"text": "Penicillin"}}) == "Penicillin"
    refuted = {
        "resourceType": "AllergyIntolerance",
        "code": {"text": "Aspirin"},
        "verificationStatus": {"coding": [{"code": "refuted"}]},
    }
    assert allergy_label(refuted) is None
