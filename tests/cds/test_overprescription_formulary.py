"""The formulary behind the decision's reasons: look-ups, product texts, indications, cohort agreement."""

from __future__ import annotations

import pytest

from cds.cohort.codes import DRUGS
from cds.formulary import default_formulary

F = default_formulary()


def test_every_cohort_drug_has_the_same_code_and_class() -> None:
    for name, drug in DRUGS.items():
        entry = F.get(name)
        assert entry is not None, name
        assert (entry.rxnorm, entry.drug_class) == (drug.rxnorm, drug.drug_class), name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("PACLitaxel 100 MG Injection", "paclitaxel"),
        ("1 ML Epoetin Alfa 4000 UNT/ML Injection [Epogen]", "epoetin alfa"),
        ("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet", "amoxicillin / clavulanate"),
        ("Amoxicillin 500 MG Oral Tablet", "amoxicillin"),
        ("Acetaminophen 325 MG Oral Tablet [Tylenol]", "acetaminophen"),
        ("Mirena 52 MG Intrauterine System", "levonorgestrel"),
        ("24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", "metformin"),
    ],
)
def test_product_texts_map_to_ingredients(text: str, name: str) -> None:
    entry = F.from_product_text(text)
    assert entry is not None and entry.name == name


def test_lookup_by_code_brand_and_name() -> None:
    assert F.lookup("anything", "2555") is F.get("cisplatin")
    assert F.get("Herceptin") is F.get("trastuzumab")
    assert F.get("  Cisplatin ") is F.get("cisplatin")
    assert F.get("not a drug") is None and F.get(None) is None


@pytest.mark.parametrize(
    ("drug", "conditions", "indicated"),
    [
        ("trastuzumab", ["breast cancer, HER2-positive"], True),
        ("trastuzumab", ["breast cancer, HER2-negative"], False),
        ("trastuzumab", ["prostate cancer"], False),
        ("rituximab", ["diffuse large B-cell lymphoma"], True),
        ("rituximab", ["breast cancer, HER2-positive"], False),
        ("ondansetron", ["colon cancer"], True),
        ("ondansetron", ["essential hypertension"], False),
        ("cetuximab", ["Malignant tumor of head and/or neck (disorder)"], True),
        ("lisinopril", ["essential hypertension"], True),
        # word matching: "prostate" must not match inside another word
        ("bicalutamide", ["prostatectomy status"], False),
    ],
)
def test_indications(drug: str, conditions: list[str], indicated: bool) -> None:
    entry = F.get(drug)
    assert entry is not None
    assert F.indicated(entry, conditions) is indicated
    assert bool(F.indicated_for(entry, conditions)) is indicated
