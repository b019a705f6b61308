"""Pure translation of extracted cancer phenotypes: to FHIR write records, state-store rows, and the
phrases the recommender's patient summary carries ("HER2-positive", "PD-L1 high", "stage IIIA").

Codes written (checked against the mCODE STU3 examples and LOINC; see README "FHIR resources we write"):
stage group LOINC 21908-9 with T / N / M components 21905-5 / 21906-3 / 21907-1; ER 16112-5, PR 16113-3,
HER2 48676-1; values positive / negative / equivocal as SNOMED CT qualifiers 10828004 / 260385009 / 42425007.
PD-L1 and the EGFR / ALK / KRAS results have no code here we could verify offline, so they carry text only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from adapters import Note, PhenotypeObservationInput
from adapters.phenotype import Coding
from cds.findings_map import finding_key, note_date
from models.phenotype import Phenotype

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
STAGE_GROUP: Coding = (LOINC, "21908-9", "Stage group.clinical Cancer")
TNM_COMPONENTS: dict[str, Coding] = {
    "T": (LOINC, "21905-5", "Primary tumor.clinical [Class] Cancer"),
    "N": (LOINC, "21906-3", "Regional lymph nodes.clinical [Class] Cancer"),
    "M": (LOINC, "21907-1", "Distant metastases.clinical [Class] Cancer"),
}
MARKERS: dict[str, tuple[Coding | None, str]] = {
    "er": ((LOINC, "16112-5", "Estrogen receptor [Interpretation] in Tissue"), "Estrogen receptor status"),
    "pr": ((LOINC, "16113-3", "Progesterone receptor [Interpretation] in Tissue"), "Progesterone receptor status"),
    "her2": ((LOINC, "48676-1", "HER2 [Interpretation] in Tissue"), "HER2 status"),
    "pdl1": (None, "PD-L1 expression (TPS or CPS category)"),
    "egfr": (None, "EGFR mutation status"),
    "alk": (None, "ALK rearrangement status"),
    "kras": (None, "KRAS mutation status"),
}
VALUES: dict[str, Coding] = {
    "positive": (SNOMED, "10828004", "Positive (qualifier value)"),
    "negative": (SNOMED, "260385009", "Negative (qualifier value)"),
    "equivocal": (SNOMED, "42425007", "Equivocal (qualifier value)"),
}
# Below this the tagger's mean token probability is too weak a witness to write anything to the EHR.
MIN_WRITE_CONFIDENCE = 0.5


def states_a_cancer(phenotype: Phenotype) -> bool:
    """Only notes that name a cancer get Observations: a stray "ER+" in a GP letter is not a phenotype."""
    return phenotype.get("diagnosis") is not None or phenotype.get("site") is not None


def tnm_parts(tnm: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(0)) for m in re.finditer(r"([TNM])(?:is|[0-4X][abc]?\d?)", tnm)]


def phenotype_inputs(
    note: Note, phenotype: Phenotype, model: tuple[str, str]
) -> tuple[list[PhenotypeObservationInput], list[dict[str, Any]]]:
    """Observations to write and the state-store row of one note's phenotype."""
    patient = note.patient_id or "unknown"
    payload = {
        f.name: {
            "value": f.value,
            "text": f.text,
            "span": list(f.span),
            "confidence": f.confidence,
            "inferred": f.inferred,
        }
        for f in phenotype.fields
    }
    rows: list[dict[str, Any]] = []
    if payload:
        rows.append(
            {
                "key": finding_key("phenotype", patient, note.id),
                "kind": "phenotype",
                "patient_id": patient,
                "note_id": note.id,
                "drug_rxnorm": None,
                "payload": payload,
                "model": f"{model[0]}@{model[1]}",
                "written": 0,
            }
        )
    if not states_a_cancer(phenotype) or note.patient_id is None:
        return [], rows
    when = note_date(note)
    inputs: list[PhenotypeObservationInput] = []
    stage, tnm = phenotype.get("stage_group"), phenotype.get("tnm")
    if stage is not None and stage.confidence >= MIN_WRITE_CONFIDENCE:
        components: tuple[tuple[Coding, str], ...] = ()
        if tnm is not None and tnm.confidence >= MIN_WRITE_CONFIDENCE:
            components = tuple((TNM_COMPONENTS[letter], value) for letter, value in tnm_parts(tnm.value))
        inputs.append(
            PhenotypeObservationInput(
                key=finding_key("phenotype-stage", patient, note.id),
                patient_id=patient,
                note_id=note.id,
                code=STAGE_GROUP,
                code_text="Cancer stage group",
                value_text=f"Stage {stage.value}",
                model_name=model[0],
                model_version=model[1],
                components=components,
                effective=when,
                evidence_text=stage.text if tnm is None else f"{tnm.text}; {stage.text}",
            )
        )
    for name, (code, label) in MARKERS.items():
        found = phenotype.get(name)
        if found is None or found.confidence < MIN_WRITE_CONFIDENCE:
            continue
        inputs.append(
            PhenotypeObservationInput(
                key=finding_key(f"phenotype-{name}", patient, note.id),
                patient_id=patient,
                note_id=note.id,
                code=code,
                code_text=label,
                value_text=found.value,
                value_coding=VALUES.get(found.value),
                model_name=model[0],
                model_version=model[1],
                laboratory=True,
                effective=when,
                evidence_text=found.text,
            )
        )
    return inputs, rows


_PHRASES = {
    "er": {"positive": "ER-positive", "negative": "ER-negative"},
    "pr": {"positive": "PR-positive", "negative": "PR-negative"},
    "her2": {"positive": "HER2-positive", "negative": "HER2-negative", "equivocal": "HER2 equivocal"},
    "pdl1": {"high": "PD-L1 high", "low": "PD-L1 low", "negative": "PD-L1 negative"},
    "egfr": {"positive": "EGFR-mutant", "negative": "EGFR wild-type"},
    "alk": {"positive": "ALK-rearranged", "negative": "ALK-negative"},
    "kras": {"positive": "KRAS-mutant", "negative": "KRAS wild-type"},
}


def summary_phrases(payloads: Sequence[dict[str, Any]]) -> list[str]:
    """Phenotype phrases for the patient summary from stored rows, newest first; each field once.

    ``payloads`` are the state-store payloads (field -> {"value": ...}) ordered newest note first.
    """
    merged: dict[str, str] = {}
    for payload in payloads:
        for name, found in payload.items():
            if isinstance(found, dict) and found.get("value") is not None:
                merged.setdefault(name, str(found["value"]))
    phrases: list[str] = []
    if "diagnosis" in merged:
        phrases.append(merged["diagnosis"] + (f", stage {merged['stage_group']}" if "stage_group" in merged else ""))
    elif "stage_group" in merged:
        phrases.append(f"stage {merged['stage_group']}")
    for name, table in _PHRASES.items():
        if name in merged and merged[name] in table:
            phrases.append(table[merged[name]])
    return phrases
