"""Cancer phenotype extractor: site, histology, diagnosis, TNM, stage group, grade, size, laterality, biomarkers."""

from __future__ import annotations

from models.phenotype.data import LabelledNote, misspelled, parse_record, read_notes
from models.phenotype.extractor import NAME, PhenotypeConfig, PhenotypeExtractor, fields_from_mentions, register
from models.phenotype.labels import BIOMARKER_FIELDS, DIAGNOSES, ENTITY_TYPES, FIELD_TYPES, FIELDS
from models.phenotype.metrics import field_metrics
from models.phenotype.noise import inject_misspellings
from models.phenotype.normalise import normalise
from models.phenotype.records import Phenotype, PhenotypeField

__all__ = [
    "BIOMARKER_FIELDS",
    "DIAGNOSES",
    "ENTITY_TYPES",
    "FIELDS",
    "FIELD_TYPES",
    "NAME",
    "LabelledNote",
    "Phenotype",
    "PhenotypeConfig",
    "PhenotypeExtractor",
    "PhenotypeField",
    "field_metrics",
    "fields_from_mentions",
    "inject_misspellings",
    "misspelled",
    "normalise",
    "parse_record",
    "read_notes",
    "register",
]
