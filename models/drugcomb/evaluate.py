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


def score_notes(
    extractor: DrugCombExtractor, records: Sequence[dict[str, Any]], batch_size: int = 16
) -> dict[str, Any]:
    """Combinations found in raw note text (drugs found by the lexicon) against the notes' truth.

    A prediction matches a true combination of the same note when their sentences overlap and the drug
    sets are equal; ``f1_labelled`` also needs the same class (POS / COMB / NEG).
    """
    gold: list[tuple[str, tuple[int, int], frozenset[str], str]] = []
    for record in records:
        for combo in record.get("combinations") or []:
            span = (int(combo["sentence_span"][0]), int(combo["sentence_span"][1]))
            gold.append((str(record["note_id"]), span, frozenset(combo["drugs"]), str(combo["label"])))
    predicted: list[tuple[str, tuple[int, int], frozenset[str], str]] = []
    texts = [str(r["text"]) for r in records]
    for record, found in zip(records, extractor.pipe(texts, batch_size), strict=True):
        for combo in found:
            predicted.append((str(record["note_id"]), combo.sentence_span, frozenset(combo.drugs), combo.label))
    out: dict[str, Any] = {"notes": len(records), "gold_combinations": len(gold), "predicted": len(predicted)}
    for name, labelled in (("drugs", False), ("labelled", True)):
        hits_p = sum(1 for p in predicted if any(_same(p, g, labelled) for g in gold))
        hits_g = sum(1 for g in gold if any(_same(p, g, labelled) for p in predicted))
        precision = hits_p / len(predicted) if predicted else 0.0
        recall = hits_g / len(gold) if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update(
            {f"precision_{name}": round(precision, 4), f"recall_{name}": round(recall, 4), f"f1_{name}": round(f1, 4)}
        )
    return out


def _same(
    p: tuple[str, tuple[int, int], frozenset[str], str],
    g: tuple[str, tuple[int, int], frozenset[str], str],
    labelled: bool,
) -> bool:
    overlap = p[1][0] < g[1][1] and g[1][0] < p[1][1]
    return p[0] == g[0] and overlap and p[2] == g[2] and (not labelled or p[3] == g[3])
