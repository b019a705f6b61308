"""The overprescription decision on hand-made cases: which drafts are warned about, and the reasons shown."""

from __future__ import annotations

import pytest

from cds.formulary import default_formulary
from cds.overprescription import Order, OverprescriptionWarning, PriorEvent, decide_overprescription

F = default_formulary()
LUNG = ["non-small cell lung cancer", "hypertension"]
T = 0.5


def _decide(
    orders: list[Order],
    scores: dict[str, float],
    conditions: list[str] | None = None,
    events: list[PriorEvent] | None = None,
    include_active: bool = False,
) -> list[OverprescriptionWarning]:
    return decide_overprescription(
        orders, LUNG if conditions is None else conditions, events or [], scores, T, F, include_active=include_active
    )


def test_low_score_warns_with_no_indication_reason() -> None:
    orders = [Order("carboplatin", "40048", "mr-1"), Order("trastuzumab", "224905", "mr-2")]
    warnings = _decide(orders, {"carboplatin": 0.9, "trastuzumab": 0.1})
    assert len(warnings) == 1
    w = warnings[0]
    assert (w.drug, w.rxnorm, w.medication_request_id, w.score) == ("trastuzumab", "224905", "mr-2", 0.1)
    assert w.kinds == ("low_score", "no_indication")
    assert not w.hard
    assert "non-small cell lung cancer" in w.reasons[1].detail


def test_no_indication_alone_does_not_warn_when_the_model_agrees() -> None:
    assert _decide([Order("trastuzumab")], {"trastuzumab": 0.8}) == []


def test_low_score_on_an_indicated_drug_shows_only_the_model_reason() -> None:
    [w] = _decide([Order("pemetrexed")], {"pemetrexed": 0.2})
    assert w.kinds == ("low_score",)


def test_duplicate_of_an_active_order_warns_whatever_the_score() -> None:
    orders = [Order("ondansetron", status="active"), Order("palonosetron", "70561", "mr-9")]
    [w] = _decide(orders, {"palonosetron": 0.97})
    assert w.drug == "palonosetron" and w.kinds == ("duplicate_therapy",) and w.hard
    assert "ondansetron" in w.reasons[0].detail and "5-HT3 antagonist" in w.reasons[0].detail


def test_continuing_an_active_drug_is_not_the_duplicate() -> None:
    orders = [
        Order("ondansetron", status="active"),
        Order("granisetron", status="active"),
        Order("ondansetron", medication_request_id="mr-2"),
    ]
    assert _decide(orders, {"ondansetron": 0.9}) == []
    # The same order as a new drug (not active before) is the duplicate of the active granisetron.
    [w] = _decide(orders[1:], {"ondansetron": 0.9})
    assert w.drug == "ondansetron" and w.kinds == ("duplicate_therapy",)


def test_two_new_drafts_of_one_class_keep_the_better_scored() -> None:
    orders = [Order("cisplatin", medication_request_id="a"), Order("carboplatin", medication_request_id="b")]
    [w] = _decide(orders, {"cisplatin": 0.6, "carboplatin": 0.9})
    assert w.drug == "cisplatin" and w.kinds == ("duplicate_therapy",)
    assert "carboplatin" in w.reasons[0].detail


def test_drugs_of_different_classes_are_not_duplicates() -> None:
    orders = [
        Order("carboplatin"),
        Order("paclitaxel"),
        Order("pembrolizumab"),
        Order("ondansetron"),
        Order("dexamethasone"),
    ]
    assert (
        _decide(
            orders, dict.fromkeys(["carboplatin", "paclitaxel", "pembrolizumab", "ondansetron", "dexamethasone"], 0.9)
        )
        == []
    )


@pytest.mark.parametrize(("grade", "warned"), [(2, False), (3, True), (4, True), (None, False)])
def test_prior_serious_ade_needs_grade_three(grade: int | None, warned: bool) -> None:
    events = [PriorEvent("bevacizumab", "253337", grade, "proteinuria", "2025-08-21")]
    result = _decide([Order("bevacizumab")], {"bevacizumab": 0.95}, ["colon cancer"], events)
    assert bool(result) is warned
    if warned:
        assert result[0].kinds == ("prior_serious_ade",)
        assert f"grade {grade} proteinuria" in result[0].reasons[0].detail


def test_prior_event_matches_by_rxnorm_and_brand() -> None:
    by_code = [PriorEvent("Avastin", "253337", 3, "proteinuria")]
    [w] = _decide([Order("bevacizumab 25 MG/ML Injection", "253337")], {}, ["colon cancer"], by_code)
    assert w.kinds == ("prior_serious_ade",) and w.score is None
    by_brand = [PriorEvent("Avastin", None, 3, "proteinuria")]
    [w] = _decide([Order("bevacizumab")], {"bevacizumab": 0.9}, ["colon cancer"], by_brand)
    assert w.kinds == ("prior_serious_ade",)
    other = [PriorEvent("cetuximab", "318341", 4, "rash")]
    assert _decide([Order("bevacizumab")], {"bevacizumab": 0.9}, ["colon cancer"], other) == []


def test_all_reasons_together_in_fixed_order() -> None:
    orders = [Order("ondansetron", status="active"), Order("granisetron")]
    events = [PriorEvent("granisetron", None, 3, "constipation")]
    [w] = _decide(orders, {"granisetron": 0.05}, ["essential hypertension"], events)
    assert w.kinds == ("low_score", "duplicate_therapy", "prior_serious_ade", "no_indication")


def test_unknown_drug_gets_only_the_model_reason() -> None:
    assert _decide([Order("zzz-unknown")], {"zzz-unknown": 0.9}) == []
    [w] = _decide([Order("zzz-unknown")], {"zzz-unknown": 0.1})
    assert w.kinds == ("low_score",) and w.rxnorm is None


def test_without_scores_only_hard_rules_warn() -> None:
    assert _decide([Order("trastuzumab")], {}) == []
    [w] = _decide([Order("filgrastim", status="active"), Order("pegfilgrastim")], {})
    assert w.kinds == ("duplicate_therapy",) and w.score is None


def test_active_orders_are_context_only_by_default() -> None:
    orders = [Order("trastuzumab", status="active")]
    assert _decide(orders, {"trastuzumab": 0.1}) == []
    [w] = _decide(orders, {"trastuzumab": 0.1}, include_active=True)
    assert w.drug == "trastuzumab"


def test_threshold_is_strict_below() -> None:
    assert _decide([Order("pemetrexed")], {"pemetrexed": T}) == []


def test_separate_warning_threshold_means_a_confident_no() -> None:
    def decide(drug: str, score: float) -> list[OverprescriptionWarning]:
        return decide_overprescription([Order(drug)], LUNG, [], {drug: score}, 0.5, F, warning_threshold=0.1)

    assert decide("pemetrexed", 0.3) == []  # not recommended, but not judged wrong either
    [w] = decide("pemetrexed", 0.05)
    assert w.kinds == ("low_score",) and "warning threshold 0.10" in w.reasons[0].detail
    # The formulary's "no indication" warns once the model does not recommend the drug either ...
    [w] = decide("trastuzumab", 0.3)
    assert w.kinds == ("low_score", "no_indication") and "recommendation threshold 0.50" in w.reasons[0].detail
    # ... and not when the model recommends it.
    assert decide("trastuzumab", 0.7) == []


def test_the_orders_own_stated_reason_can_be_its_indication() -> None:
    # Tamsulosin for radiotherapy-induced urinary frequency in a patient whose conditions are all cancers.
    rectal = ["rectal cancer"]
    [w] = _decide([Order("tamsulosin", "77492", "mr-1")], {"tamsulosin": 0.1}, conditions=rectal)
    assert "no_indication" in w.kinds
    stated = Order("tamsulosin", "77492", "mr-1", reasons=("urinary frequency",))
    [w] = _decide([stated], {"tamsulosin": 0.1}, conditions=rectal)
    assert w.kinds == ("low_score",)  # the model may still doubt it; the formulary no longer does
    assert _decide([stated], {"tamsulosin": 0.6}, conditions=rectal) == []


BREAST = ["malignant neoplasm of breast"]


def test_tumour_phenotype_from_the_notes_is_an_indication() -> None:
    # The coded diagnosis says only "breast"; the pathology note said HER2 3+.
    def decide(phenotype: list[str]) -> list[OverprescriptionWarning]:
        return decide_overprescription(
            [Order("trastuzumab", "224905", "mr-1")], BREAST, [], {"trastuzumab": 0.2}, T, F, tumour_phenotype=phenotype
        )

    [w] = decide([])
    assert w.kinds == ("low_score", "no_indication")
    [w] = decide(["breast cancer, stage IIB", "HER2-positive"])
    assert w.kinds == ("low_score",)


@pytest.mark.parametrize(
    ("drug", "rxnorm", "conditions", "phenotype", "mismatch"),
    [
        ("trastuzumab", "224905", ["breast cancer, her2-positive"], ["HER2-negative"], "HER2-negative"),
        ("pertuzumab", "1298944", BREAST, ["ER-positive", "her2-negative"], "her2-negative"),
        ("cetuximab", "318341", ["colon cancer"], ["KRAS-mutant"], "KRAS-mutant"),
        ("cetuximab", "318341", ["colon cancer"], ["KRAS wild-type"], None),
        ("trastuzumab", "224905", BREAST, ["HER2 equivocal"], None),
        ("carboplatin", "40048", BREAST, ["HER2-negative"], None),
    ],
)
def test_biomarker_mismatch_is_a_hard_rule(
    drug: str, rxnorm: str, conditions: list[str], phenotype: list[str], mismatch: str | None
) -> None:
    # The model recommends every drug here: only the tumour phenotype can raise the warning.
    warnings = decide_overprescription(
        [Order(drug, rxnorm, "mr-1")], conditions, [], {drug: 0.95}, T, F, tumour_phenotype=phenotype
    )
    if mismatch is None:
        assert warnings == []
        return
    [w] = warnings
    assert w.kinds[0] == "biomarker_mismatch" and w.hard
    assert mismatch in w.reasons[0].detail and "notes" in w.reasons[0].detail
