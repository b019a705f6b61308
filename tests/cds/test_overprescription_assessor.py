"""The CDS order assessor: FHIR-side records in, overprescription warnings with readable reasons out."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from adapters import MedicationOrder, PatientContext, RecordedAdverseEvent
from adapters.records import ConditionRecord
from cds.formulary import default_formulary
from cds.recommender_assessor import RecommenderAssessor, drug_name, patient_summary, prior_events

F = default_formulary()


def _order(id_: str, display: str, rxnorm: str | None, status: str) -> MedicationOrder:
    return MedicationOrder(
        id=id_,
        patient_id="p1",
        encounter_id=None,
        rxnorm_code=rxnorm,
        display=display,
        ingredient=None,
        status=status,
        intent="order",
        authored_on=None,
        dosage_text=None,
        requester=None,
        last_updated=None,
    )


def _condition(display: str, status: str = "active") -> ConditionRecord:
    return ConditionRecord("c-" + display[:5], None, None, display, status, "confirmed", None)


CONTEXT = PatientContext(
    patient_id="p1",
    age=64,
    sex="female",
    conditions=[_condition("Malignant tumor of colon (disorder)"), _condition("Sprain of ankle", "resolved")],
    medications=[
        _order("mr-1", "Ondansetron 8 MG Oral Tablet", "26225", "active"),
        _order("mr-0", "Lisinopril 10 MG Oral Tablet", None, "stopped"),
    ],
    allergies=["penicillin"],
)
DRAFTS = [
    _order("mr-2", "Granisetron 1 MG Oral Tablet", "26237", "draft"),
    _order("mr-3", "bevacizumab 25 MG/ML Injection", "253337", "draft"),
    _order("mr-4", "oxaliplatin 5 MG/ML Injection", None, "draft"),
]
PRIOR = [
    RecordedAdverseEvent(
        "ae-1",
        "p1",
        "253337",
        "Avastin",
        "Proteinuria",
        None,
        3,
        datetime(2025, 8, 21),
        None,
        None,
        None,
        True,
        "severe",
    )
]


def test_summary_mirrors_the_training_visits() -> None:
    summary = patient_summary(CONTEXT, DRAFTS, prior_events(PRIOR), F)
    assert summary.conditions == ("malignant tumor of colon",)
    assert summary.previous_medications == ("ondansetron",)
    assert summary.history == "grade 3 proteinuria on avastin (2025-08-21)"
    assert (summary.age, summary.sex, summary.allergies) == (64, "female", ("penicillin",))
    assert [drug_name(d, F) for d in DRAFTS] == ["granisetron", "bevacizumab", "oxaliplatin"]


def test_without_a_model_only_the_hard_rules_warn() -> None:
    warnings = asyncio.run(RecommenderAssessor(None, F).assess(CONTEXT, DRAFTS, PRIOR))
    by_id = {w.medication_request_id: w for w in warnings}
    assert set(by_id) == {"mr-2", "mr-3"}
    assert by_id["mr-2"].drug_display == "Granisetron 1 MG Oral Tablet"
    assert "ondansetron is also ordered" in by_id["mr-2"].reasons[0]
    assert by_id["mr-3"].reasons[0].startswith("grade 3 proteinuria")
    assert all(math.isnan(w.score) for w in warnings)


def test_summary_prefers_the_clinicians_condition_label() -> None:
    her2 = ConditionRecord(
        "c1",
        "254837009",
        None,
        "Malignant neoplasm of breast (disorder)",
        "active",
        None,
        None,
        text="breast cancer, HER2-positive",
    )
    context = PatientContext(patient_id="p2", age=51, sex="female", conditions=[her2])
    summary = patient_summary(context, [], [], F)
    assert summary.conditions == ("breast cancer, her2-positive",)
    # ... which is also what the formulary reads an indication from (trastuzumab is indicated).
    trastuzumab = F.lookup("trastuzumab", "224905")
    assert trastuzumab is not None and F.indicated(trastuzumab, summary.conditions)


def test_the_stored_tumour_phenotype_reaches_the_policy() -> None:
    breast = PatientContext(
        patient_id="p3",
        age=58,
        sex="female",
        conditions=[_condition("Malignant neoplasm of breast (disorder)")],
    )
    drafts = [_order("mr-7", "trastuzumab 150 MG Injection", "224905", "draft")]
    asked: list[str] = []

    def phenotypes(patient_id: str) -> list[str]:
        asked.append(patient_id)
        return ["breast cancer, stage IIA", "HER2-negative"]

    [w] = asyncio.run(RecommenderAssessor(None, F, phenotypes).assess(breast, drafts, []))
    assert asked == ["p3"]
    assert w.kinds == ("biomarker_mismatch", "no_indication") and "HER2-negative" in w.reasons[0]
    assert asyncio.run(RecommenderAssessor(None, F).assess(breast, drafts, [])) == []
