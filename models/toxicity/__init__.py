"""Radiotherapy toxicity extractor: each symptom of a configurable list as present / absent / not mentioned + grade."""

from __future__ import annotations

from models.toxicity.data import SymptomTruth, ToxicityNote, notes_from_records, parse_note, read_notes
from models.toxicity.extractor import REGISTRY_NAME, ToxicityExtractor, load_toxicity_extractor, register
from models.toxicity.head import decode_note, predict_notes
from models.toxicity.labels import DEFAULT_SYMPTOMS, GRADE_CLASSES, STATUSES, HeadLayout
from models.toxicity.metrics import macro_f1, toxicity_metrics

__all__ = [
    "DEFAULT_SYMPTOMS",
    "GRADE_CLASSES",
    "REGISTRY_NAME",
    "STATUSES",
    "HeadLayout",
    "SymptomTruth",
    "ToxicityExtractor",
    "ToxicityNote",
    "decode_note",
    "load_toxicity_extractor",
    "macro_f1",
    "notes_from_records",
    "parse_note",
    "predict_notes",
    "read_notes",
    "register",
    "toxicity_metrics",
]
