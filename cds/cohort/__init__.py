"""Deterministic synthetic oncology cohort: FHIR resources plus the ground truth about their notes.

``generate_cohort(patients, seed)`` is pure (no clock, no global random state); ``write_truth`` and
``write_ndjson`` put it on disk in the formats the models and the evaluation read.
"""

from cds.cohort.ctcae import CtcaeTerm, load_ctcae_terms
from cds.cohort.generate import generate_cohort
from cds.cohort.lexicon import SYMPTOMS
from cds.cohort.records import (
    GENERATOR_VERSION,
    AdeTruth,
    Cohort,
    CombinationTruth,
    NoteTruth,
    OverprescriptionTruth,
    ToxicityTruth,
    VisitPatient,
    VisitTruth,
)
from cds.cohort.truth import TRUTH_FILES, check_layout, read_jsonl, write_ndjson, write_truth

__all__ = [
    "GENERATOR_VERSION",
    "SYMPTOMS",
    "TRUTH_FILES",
    "AdeTruth",
    "Cohort",
    "CombinationTruth",
    "CtcaeTerm",
    "NoteTruth",
    "OverprescriptionTruth",
    "ToxicityTruth",
    "VisitPatient",
    "VisitTruth",
    "check_layout",
    "generate_cohort",
    "load_ctcae_terms",
    "read_jsonl",
    "write_ndjson",
    "write_truth",
]
