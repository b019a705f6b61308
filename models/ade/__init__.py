"""ADE extractor: drugs, adverse events, who caused what, negation, CTCAE grade and term."""

from __future__ import annotations

from pathlib import Path

from models.ade.corpus import AdeSentence, read_corpus, split_by_pmid, write_corpus
from models.ade.ctcae import CtcaeIndex, CtcaeTerm, read_terms
from models.ade.extractor import NAME, AdeConfig, AdeExtractor
from models.ade.metrics import METRIC_KEYS, corpus_metrics, note_metrics
from models.registry import Registry, RuntimeConfig

__all__ = [
    "METRIC_KEYS",
    "NAME",
    "AdeConfig",
    "AdeExtractor",
    "AdeSentence",
    "CtcaeIndex",
    "CtcaeTerm",
    "corpus_metrics",
    "note_metrics",
    "read_corpus",
    "read_terms",
    "register",
    "split_by_pmid",
    "write_corpus",
]


def _factory(model_dir: Path, runtime: RuntimeConfig) -> AdeExtractor:
    return AdeExtractor.load(model_dir, runtime, verify=not runtime.extra.get("unverified", False))


def register(registry: Registry) -> None:
    registry.register(NAME, _factory)
