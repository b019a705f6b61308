"""The tumour phenotype line of the recommender summary: one format written at inference, trained, evaluated."""

from __future__ import annotations

from cds.formulary import default_formulary
from cds.recommender_eval import outcome
from cds.recommender_tumour import history_with_phenotype, is_variant, phenotype_of, with_phenotype_variants
from models.recommender.prompt import PatientSummary
from models.recommender.visits import TrainingVisit


def _visit(visit_id: str, label: str, history: str, overprescribed: tuple[str, ...] = ()) -> TrainingVisit:
    patient = PatientSummary(57, "female", (label, "hypertension"), ("ondansetron",), (), history)
    return TrainingVisit(visit_id, patient, ("docetaxel", *overprescribed), (), overprescribed, "pt-1")


def test_history_round_trips_the_phenotype() -> None:
    history = history_with_phenotype(["breast cancer, stage IIB", "HER2-positive"], ["grade 3 colitis on x"])
    assert history == "tumour phenotype: breast cancer, stage IIB, HER2-positive; grade 3 colitis on x"
    assert phenotype_of(history) == ["breast cancer", "stage IIB", "HER2-positive"]
    assert history_with_phenotype([], ["grade 3 colitis on x"]) == "grade 3 colitis on x"
    assert phenotype_of("grade 3 colitis on x") == []


def test_a_biomarker_visit_gets_a_variant_with_the_generic_site_code() -> None:
    visit = _visit("e1", "breast cancer, HER2-negative", "Stage III breast cancer, HER2-negative; regimen TC")
    [original, variant] = with_phenotype_variants([visit])
    assert original is visit and is_variant(variant) and not is_variant(visit)
    assert variant.patient.conditions == ("breast cancer", "hypertension")
    assert variant.patient.history == "tumour phenotype: breast cancer, stage III, HER2-negative; regimen TC"
    assert (variant.group, variant.prescribed) == (visit.group, visit.prescribed)  # same dev side, same truth


def test_visits_without_a_staged_cancer_or_outside_the_share_have_none() -> None:
    synthea = _visit("s1", "hypertension", "chief complaint: cough")
    assert with_phenotype_variants([synthea]) == [synthea]
    colon = [_visit(f"c{i}", "colon cancer", "Stage II colon cancer; regimen FOLFOX") for i in range(60)]
    variants = [v for v in with_phenotype_variants(colon, share=1 / 3) if is_variant(v)]
    assert 8 <= len(variants) <= 32  # about a third, fixed by the visit ids
    assert [v.visit_id for v in variants] == [v.visit_id for v in with_phenotype_variants(colon) if is_variant(v)]
    assert not [v for v in with_phenotype_variants(colon, share=0.0) if is_variant(v)]


def test_evaluation_reads_the_phenotype_line_like_the_service() -> None:
    # trastuzumab drafted for a HER2-negative tumour that only the phenotype line states: the hard rule warns
    # even though the scores recommend it.
    visit = _visit("e2", "breast cancer, HER2-negative", "Stage II breast cancer, HER2-negative", ("trastuzumab",))
    [_, variant] = with_phenotype_variants([visit])
    scores = {"docetaxel": 0.9, "trastuzumab": 0.9}
    assert outcome(variant, scores, 0.5, default_formulary()).warned == frozenset({"trastuzumab"})
