"""The tumour phenotype in the recommender's patient summary: one format for inference, training and evaluation.

At inference the phenotype phrases the notes stage stored ("breast cancer, stage IIB", "HER2-positive") open
the summary's history as ``tumour phenotype: breast cancer, stage IIB, HER2-positive``. The synthetic cohort
states the same facts in its condition label ("breast cancer, HER2-positive") and history ("Stage IIB breast
cancer, HER2-positive; regimen TH"), so a model trained on it alone never needs the phenotype line. Training
therefore adds, per cohort visit, a *phenotype variant*: the coded condition cut to the site ("breast
cancer", what a registry code says) and the stage and biomarkers moved into the phenotype line, as a site
whose pathology lives in notes presents. Pure functions over plain records.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace

from models.recommender.prompt import PatientSummary
from models.recommender.visits import TrainingVisit

PREFIX = "tumour phenotype: "
VARIANT_SUFFIX = "~phenotype"
_STAGED = re.compile(r"^stage\s+([0IV]+[ABC]?\d?)\s+(.+)$", re.I)


def history_with_phenotype(phenotype: Sequence[str], rest: Sequence[str]) -> str:
    """The summary's history: the phenotype line first (when there is one), then the other clauses."""
    clauses = ([PREFIX + ", ".join(phenotype)] if phenotype else []) + list(rest)
    return "; ".join(clauses)


def phenotype_of(history: str) -> list[str]:
    """The phenotype phrases back from a history written by :func:`history_with_phenotype`."""
    first = history.split(";", 1)[0].strip()
    if not first.lower().startswith(PREFIX):
        return []
    return [p.strip() for p in first[len(PREFIX) :].split(",") if p.strip()]


def _keep_share(visit_id: str, share: float) -> bool:
    digest = hashlib.sha256(f"oncovigil-phenotype-variant:{visit_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def phenotype_variant(visit: TrainingVisit, share: float = 1 / 3) -> TrainingVisit | None:
    """The visit as a site with a generic cancer code and the tumour in the notes would summarise it.

    Every visit whose cancer label carries a biomarker ("breast cancer, HER2-negative") has a variant; of
    the others, a fixed ``share`` (by a hash of the visit id), so the phenotype line is a familiar sight
    without doubling the data. ``None`` when the visit does not start with a staged cancer (Synthea visits).
    """
    patient = visit.patient
    if not patient.conditions or not patient.history:
        return None
    label = patient.conditions[0]
    first, _, rest = patient.history.partition(";")
    staged = _STAGED.match(first.strip())
    if staged is None or staged.group(2).strip().lower() != label.lower():
        return None
    site, *markers = [part.strip() for part in label.split(",")]
    if not markers and not _keep_share(visit.visit_id, share):
        return None
    phrases = [f"{site}, stage {staged.group(1)}", *markers]
    others = [c.strip() for c in rest.split(";") if c.strip()]
    summary = PatientSummary(
        age=patient.age,
        sex=patient.sex,
        conditions=(site, *patient.conditions[1:]),
        previous_medications=patient.previous_medications,
        allergies=patient.allergies,
        history=history_with_phenotype(phrases, others),
    )
    return replace(visit, visit_id=visit.visit_id + VARIANT_SUFFIX, patient=summary)


def is_variant(visit: TrainingVisit) -> bool:
    return visit.visit_id.endswith(VARIANT_SUFFIX)


def with_phenotype_variants(visits: Sequence[TrainingVisit], share: float = 1 / 3) -> list[TrainingVisit]:
    """The visits, each followed by its phenotype variant where it has one (same group: same dev side)."""
    out: list[TrainingVisit] = []
    for visit in visits:
        out.append(visit)
        variant = phenotype_variant(visit, share)
        if variant is not None:
            out.append(variant)
    return out
