"""Pure translation of extracted cancer phenotypes: to FHIR write records, state-store rows, and the
phrases the recommender's patient summary carries ("HER2-positive", "PD-L1 high", "stage IIIA").

Codes written (checked against the mCODE STU3 examples and LOINC; see README "FHIR resources we write"):
stage group LOINC 21908-9 with T / N / M components 21905-5 / 21906-3 / 21907-1; ER 16112-5, PR 16113-3,
HER2 48676-1; values positive / negative / equivocal as SNOMED CT qualifiers 10828004 / 260385009 / 42425007.
EGFR / ALK / KRAS as the HL7 Genomics Reporting IG's molecular biomarkers: LOINC 69548-6 "Genetic variant
assessment" with a 48018-6 "Gene studied [ID]" component naming the HGNC gene (3236 / 427 / 6407). PD-L1 names
its gene (CD274, HGNC:17635) the same way; its own LOINC codes are per antibody clone (85147-7 is 22C3), and
notes rarely state the clone, so its code is text. The primary cancer Condition carries the SNOMED CT disorder
of the diagnosis label (the codes the cohort's own Conditions use, plus 363418001 for the pancreas).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from adapters import Note, PhenotypeObservationInput
from adapters.phenotype import Coding, ObservationComponent, PrimaryCancerConditionInput
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
HGNC = "http://www.genenames.org/geneId"
GENE_STUDIED: Coding = (LOINC, "48018-6", "Gene studied [ID]")
VARIANT_ASSESSMENT: Coding = (LOINC, "69548-6", "Genetic variant assessment")
# field -> (Observation code, its text, the gene studied)
MARKERS: dict[str, tuple[Coding | None, str, Coding | None]] = {
    "er": ((LOINC, "16112-5", "Estrogen receptor [Interpretation] in Tissue"), "Estrogen receptor status", None),
    "pr": (
        (LOINC, "16113-3", "Progesterone receptor [Interpretation] in Tissue"),
        "Progesterone receptor status",
        None,
    ),
    "her2": ((LOINC, "48676-1", "HER2 [Interpretation] in Tissue"), "HER2 status", None),
    "pdl1": (None, "PD-L1 expression (TPS or CPS category)", (HGNC, "HGNC:17635", "CD274")),
    "egfr": (VARIANT_ASSESSMENT, "EGFR mutation status", (HGNC, "HGNC:3236", "EGFR")),
    "alk": (VARIANT_ASSESSMENT, "ALK rearrangement status", (HGNC, "HGNC:427", "ALK")),
    "kras": (VARIANT_ASSESSMENT, "KRAS mutation status", (HGNC, "HGNC:6407", "KRAS")),
}
DIAGNOSES: dict[str, Coding] = {
    "breast cancer": (SNOMED, "254837009", "Malignant neoplasm of breast (disorder)"),
    "non-small cell lung cancer": (SNOMED, "254637007", "Non-small cell lung cancer (disorder)"),
    "colon cancer": (SNOMED, "363406005", "Malignant tumor of colon (disorder)"),
    "rectal cancer": (SNOMED, "363351006", "Malignant tumor of rectum (disorder)"),
    "prostate cancer": (SNOMED, "399068003", "Malignant tumor of prostate (disorder)"),
    "pancreatic cancer": (SNOMED, "363418001", "Malignant tumor of pancreas (disorder)"),
    "head and neck squamous cell carcinoma": (SNOMED, "255055008", "Malignant tumor of head and/or neck (disorder)"),
}
VALUES: dict[str, Coding] = {
    "positive": (SNOMED, "10828004", "Positive (qualifier value)"),
    "negative": (SNOMED, "260385009", "Negative (qualifier value)"),
    "equivocal": (SNOMED, "42425007", "Equivocal (qualifier value)"),
}
NOTE_DATE = "note_date"
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
                # the note's date is no field: it orders a patient's phenotypes whatever order they were read in
                "payload": {**payload, NOTE_DATE: note_date(note).isoformat()},
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
        components: tuple[ObservationComponent, ...] = ()
        if tnm is not None and tnm.confidence >= MIN_WRITE_CONFIDENCE:
            components = tuple(
                ObservationComponent(TNM_COMPONENTS[letter], value) for letter, value in tnm_parts(tnm.value)
            )
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
    for name, (code, label, gene) in MARKERS.items():
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
                components=(ObservationComponent(GENE_STUDIED, gene[2], gene),) if gene is not None else (),
            )
        )
    return inputs, rows


def primary_cancer_input(
    patient_id: str, notes: Sequence[tuple[str, dict[str, Any]]], model: tuple[str, str]
) -> PrimaryCancerConditionInput | None:
    """The patient's primary cancer from stored phenotype rows ``(note id, payload)``, newest note first.

    The newest diagnosis the notes state decides which cancer; its site, histology and stage are the newest
    ones stated in notes naming that same diagnosis (or none), so a second cancer's stage never leaks in.
    Fields below the write confidence are left out, as for the Observations.
    """

    def value(payload: dict[str, Any], name: str) -> str | None:
        found = payload.get(name)
        if not isinstance(found, dict) or found.get("value") is None:
            return None
        return str(found["value"]) if float(found.get("confidence") or 0.0) >= MIN_WRITE_CONFIDENCE else None

    diagnosis = next((d for _, p in notes if (d := value(p, "diagnosis")) is not None), None)
    if diagnosis is None:
        return None
    same = [(n, p) for n, p in notes if value(p, "diagnosis") in (diagnosis, None)]
    first = {
        name: next((v for _, p in same if (v := value(p, name)) is not None), None)
        for name in ("site", "laterality", "histology", "stage_group")
    }
    site = " ".join(v for v in (first["laterality"], first["site"]) if v) or None
    return PrimaryCancerConditionInput(
        key=finding_key("primary-cancer", patient_id, diagnosis),
        patient_id=patient_id,
        code=DIAGNOSES.get(diagnosis),
        code_text=diagnosis,
        model_name=model[0],
        model_version=model[1],
        evidence_note_ids=tuple(sorted(n for n, p in notes if value(p, "diagnosis") == diagnosis)),
        body_site_text=site,
        histology_text=first["histology"],
        stage_text=f"Stage {first['stage_group']}" if first["stage_group"] else None,
    )


_PHRASES = {
    "er": {"positive": "ER-positive", "negative": "ER-negative"},
    "pr": {"positive": "PR-positive", "negative": "PR-negative"},
    "her2": {"positive": "HER2-positive", "negative": "HER2-negative", "equivocal": "HER2 equivocal"},
    "pdl1": {"high": "PD-L1 high", "low": "PD-L1 low", "negative": "PD-L1 negative"},
    "egfr": {"positive": "EGFR-mutant", "negative": "EGFR wild-type"},
    "alk": {"positive": "ALK-rearranged", "negative": "ALK-negative"},
    "kras": {"positive": "KRAS-mutant", "negative": "KRAS wild-type"},
}


def stored_model(label: str) -> tuple[str, str]:
    """(name, version) back from a stored row's ``model`` ("name@version", as ``phenotype_inputs`` writes it)."""
    name, _, version = label.partition("@")
    return name, version


def note_order(row: Any) -> tuple[str, str]:
    """Sort key of stored phenotype rows, oldest first (the note's date, then its id); reverse for newest."""
    return (str(row.payload.get(NOTE_DATE) or ""), str(row.note_id))


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
