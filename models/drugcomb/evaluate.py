"""Score a drug-combination extractor on DrugComb-format sentences (gold drug spans given)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.drugcomb.data import DrugCombDoc
from models.drugcomb.decode import CandidateDecision
from models.drugcomb.extractor import DrugCombExtractor
from models.drugcomb.scoring import ScoredRelation, drugcomb_scores


def gold_relations(docs: Sequence[DrugCombDoc]) -> list[ScoredRelation]:
    return [ScoredRelation(d.doc_id, frozenset(r.span_ids), r.label) for d in docs for r in d.relations]


def as_scored(docs: Sequence[DrugCombDoc], decisions: Sequence[Sequence[CandidateDecision]]) -> list[ScoredRelation]:
    """Decisions (members are positions into each doc's spans) as span-id relations for the scorer."""
    out: list[ScoredRelation] = []
    for doc, kept in zip(docs, decisions, strict=True):
        for decision in kept:
            out.append(
                ScoredRelation(doc.doc_id, frozenset(doc.spans[i].span_id for i in decision.members), decision.label)
            )
    return out


def score_docs(extractor: DrugCombExtractor, docs: Sequence[DrugCombDoc], batch_size: int = 64) -> dict[str, Any]:
    """The four DrugComb F1 scores (plus precision / recall) and the counts they rest on."""
    decisions: list[list[CandidateDecision]] = []
    for at in range(0, len(docs), batch_size):
        decisions += extractor.classify(docs[at : at + batch_size])
    predicted = as_scored(docs, decisions)
    gold = gold_relations(docs)
    metrics: dict[str, Any] = {k: round(v, 4) for k, v in drugcomb_scores(gold, predicted).items()}
    metrics.update(sentences=len(docs), gold_relations=len(gold), predicted_relations=len(predicted))
    return metrics
