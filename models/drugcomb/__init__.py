"""N-ary drug-combination extractor (DrugComb, Tiktinsky et al. NAACL 2022): which drugs were combined, did it work."""

from __future__ import annotations

from models.drugcomb.candidates import CLASS_LABELS, CandidateConfig, enumerate_candidates, mark_sentence
from models.drugcomb.data import (
    DrugCombDoc,
    DrugSpan,
    GoldRelation,
    docs_from_note_records,
    parse_doc,
    read_jsonl,
    split_docs,
)
from models.drugcomb.decode import CandidateDecision, decide
from models.drugcomb.extractor import (
    REGISTRY_NAME,
    DecodeConfig,
    DrugCombExtractor,
    load_drugcomb_extractor,
    register,
)
from models.drugcomb.lexicon import DrugLexicon, DrugMention
from models.drugcomb.scoring import Prf, ScoredRelation, drugcomb_scores, relation_prf

__all__ = [
    "CLASS_LABELS",
    "REGISTRY_NAME",
    "CandidateConfig",
    "CandidateDecision",
    "DecodeConfig",
    "DrugCombDoc",
    "DrugCombExtractor",
    "DrugLexicon",
    "DrugMention",
    "DrugSpan",
    "GoldRelation",
    "Prf",
    "ScoredRelation",
    "decide",
    "docs_from_note_records",
    "drugcomb_scores",
    "enumerate_candidates",
    "load_drugcomb_extractor",
    "mark_sentence",
    "parse_doc",
    "read_jsonl",
    "register",
    "relation_prf",
    "split_docs",
]
