"""Entity types the phenotype tagger learns and the fields the extractor reports.

The order of ``ENTITY_TYPES`` is part of the model (it fixes the BIO label ids); append, never reorder.
"""

from __future__ import annotations

SITE, HIST, DX, TNM, STAGE, GRADE, SIZE, LAT = "SITE", "HIST", "DX", "TNM", "STAGE", "GRADE", "SIZE", "LAT"
ER, PR, HER2, PDL1, EGFR, ALK, KRAS = "ER", "PR", "HER2", "PDL1", "EGFR", "ALK", "KRAS"

ENTITY_TYPES: tuple[str, ...] = (SITE, HIST, DX, TNM, STAGE, GRADE, SIZE, LAT, ER, PR, HER2, PDL1, EGFR, ALK, KRAS)

# field name -> the entity type whose mentions fill it ("diagnosis" also falls back to site + histology)
FIELD_TYPES: dict[str, str] = {
    "site": SITE,
    "histology": HIST,
    "diagnosis": DX,
    "tnm": TNM,
    "stage_group": STAGE,
    "grade": GRADE,
    "size_mm": SIZE,
    "laterality": LAT,
    "er": ER,
    "pr": PR,
    "her2": HER2,
    "pdl1": PDL1,
    "egfr": EGFR,
    "alk": ALK,
    "kras": KRAS,
}
FIELDS: tuple[str, ...] = tuple(FIELD_TYPES)
BIOMARKER_FIELDS: tuple[str, ...] = ("er", "pr", "her2", "pdl1", "egfr", "alk", "kras")

# Normalised diagnosis labels, each with its SNOMED CT disorder (the codes the synthetic cohort and Synthea use).
DIAGNOSES: dict[str, tuple[str, str]] = {
    "breast cancer": ("254837009", "Malignant neoplasm of breast (disorder)"),
    "non-small cell lung cancer": ("254637007", "Non-small cell lung cancer (disorder)"),
    "colon cancer": ("363406005", "Malignant tumor of colon (disorder)"),
    "rectal cancer": ("363351006", "Malignant tumor of rectum (disorder)"),
    "prostate cancer": ("399068003", "Malignant tumor of prostate (disorder)"),
    "pancreatic cancer": ("363418001", "Malignant tumor of pancreas (disorder)"),
    "head and neck squamous cell carcinoma": ("255055008", "Malignant tumor of head and/or neck (disorder)"),
}
