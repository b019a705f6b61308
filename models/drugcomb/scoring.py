"""The DrugComb relation F1 as Tiktinsky et al. (NAACL 2022) define it, written from their definition.

Labels are binarised first: for the "positive" scores only POS counts as a combination; for the "any"
scores POS, COMB and NEG all do. A gold and a predicted relation of the same sentence are aligned when
their drug sets are equal (exact) or, in partial mode, share at least two drugs; an alignment earns the
Jaccard overlap of the two drug sets (1 for exact). Precision is the mean, over predicted combinations,
of the best overlap with an aligned gold combination; recall is the same over gold combinations;
F1 is their harmonic mean. Relations are keyed by (doc_id, drug set, binary label), so duplicates count once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ScoredRelation:
    """A gold or predicted relation: sentence id, drug span ids and class (POS, COMB, NEG or NO_COMB)."""

    doc_id: str
    drugs: frozenset[int]
    label: str


@dataclass(frozen=True)
class Prf:
    precision: float
    recall: float
    f1: float


def _is_combination(label: str, positive_only: bool) -> bool:
    if positive_only:
        return label == "POS"
    return label in ("POS", "COMB", "NEG")


def relation_prf(
    gold: Sequence[ScoredRelation], predicted: Sequence[ScoredRelation], exact: bool, positive_only: bool
) -> Prf:
    """Precision, recall and F1 under one of the four DrugComb settings (see the module docstring)."""
    Key = tuple[str, frozenset[int], bool]
    gold_links: dict[Key, list[float]] = defaultdict(list)
    pred_links: dict[Key, list[float]] = defaultdict(list)
    by_doc: dict[str, list[tuple[int, ScoredRelation]]] = defaultdict(list)
    for index, rel in enumerate(predicted):
        by_doc[rel.doc_id].append((index, rel))
    linked_preds: set[int] = set()
    for g in gold:
        g_key = (g.doc_id, g.drugs, _is_combination(g.label, positive_only))
        gold_links[g_key]  # a gold relation with no aligned prediction still counts (recall 0)
        for index, p in by_doc.get(g.doc_id, []):
            shared = len(g.drugs & p.drugs)
            overlap = shared / len(g.drugs | p.drugs)
            if overlap == 1.0 or (not exact and shared >= 2):
                p_key = (p.doc_id, p.drugs, _is_combination(p.label, positive_only))
                # Credit flows only between two combinations (under this setting's binarisation).
                gold_links[g_key].append(overlap if p_key[2] else 0.0)
                pred_links[p_key].append(overlap if g_key[2] else 0.0)
                linked_preds.add(index)
    for index, p in enumerate(predicted):
        if index not in linked_preds:
            pred_links[(p.doc_id, p.drugs, _is_combination(p.label, positive_only))]
    precision = _mean_best(pred_links)
    recall = _mean_best(gold_links)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return Prf(precision, recall, f1)


def _mean_best(links: dict[tuple[str, frozenset[int], bool], list[float]]) -> float:
    best = [max(scores, default=0.0) for (_, _, is_comb), scores in links.items() if is_comb]
    return sum(best) / len(best) if best else 0.0


def drugcomb_scores(gold: Iterable[ScoredRelation], predicted: Iterable[ScoredRelation]) -> dict[str, float]:
    """The four published scores (F1) plus their precision and recall, keyed as the eval contract names them."""
    gold_list, pred_list = list(gold), list(predicted)
    out: dict[str, float] = {}
    for name, positive_only in (("pos", True), ("any", False)):
        for mode, exact in (("exact", True), ("partial", False)):
            prf = relation_prf(gold_list, pred_list, exact=exact, positive_only=positive_only)
            out[f"f1_{name}_{mode}"] = prf.f1
            out[f"precision_{name}_{mode}"] = prf.precision
            out[f"recall_{name}_{mode}"] = prf.recall
    return out


def label_prf(gold: Iterable[ScoredRelation], predicted: Iterable[ScoredRelation], label: str) -> Prf:
    """Exact-match precision, recall and F1 of one class: the same sentence, drug set and label.

    Not one of the published scores; it tells which class a model gets wrong (``oncovigil refine``).
    """
    wanted = {(r.doc_id, r.drugs) for r in gold if r.label == label}
    found = {(r.doc_id, r.drugs) for r in predicted if r.label == label}
    hits = len(wanted & found)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(wanted) if wanted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return Prf(precision, recall, f1)
