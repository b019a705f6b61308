"""Scores for the ADE extractor: ADE-Corpus-V2 style span / pair F1, and note-level checks.

Corpus metrics (the ``oncovigil eval ade`` contract): per sentence, the predicted drug spans, event spans
and (drug, event) pairs of *non-negated* findings against the gold annotation; exact spans, and for
pairs also relaxed (both spans overlap, one-to-one matching). A negated event is no adverse drug event,
so it counts neither as an ADE nor as a pair here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.ade.corpus import AdeSentence, Span
from models.records import AdeFinding

METRIC_KEYS: tuple[str, ...] = (
    *(f"{kind}_{m}" for kind in ("drug", "ade", "pair") for m in ("precision", "recall", "f1")),
    "pair_precision_relaxed",
    "pair_recall_relaxed",
    "pair_f1_relaxed",
)


def prf(tp: float, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return round(precision, 4), round(recall, 4), round(f1, 4)


def _overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _relaxed_matches(pred: Sequence[tuple[Span, Span]], gold: Sequence[tuple[Span, Span]]) -> int:
    used: set[int] = set()
    matched = 0
    for drug, event in pred:
        for index, (gold_drug, gold_event) in enumerate(gold):
            if index not in used and _overlap(drug, gold_drug) and _overlap(event, gold_event):
                used.add(index)
                matched += 1
                break
    return matched


def corpus_metrics(sentences: Sequence[AdeSentence], predictions: Sequence[Sequence[AdeFinding]]) -> dict[str, float]:
    counts = {k: [0, 0, 0] for k in ("drug", "ade", "pair", "relaxed")}  # tp, predicted, gold
    for sentence, findings in zip(sentences, predictions, strict=True):
        kept = [f for f in findings if not f.negated]
        pred_drugs = {f.drug_span for f in kept}
        pred_events = {f.event_span for f in kept}
        pred_pairs = {(f.drug_span, f.event_span) for f in kept}
        for key, pred, gold in (
            ("drug", pred_drugs, sentence.drugs),
            ("ade", pred_events, sentence.events),
            ("pair", pred_pairs, sentence.pairs),
        ):
            counts[key][0] += len(pred & gold)
            counts[key][1] += len(pred)
            counts[key][2] += len(gold)
        counts["relaxed"][0] += _relaxed_matches(sorted(pred_pairs), sorted(sentence.pairs))
        counts["relaxed"][1] += len(pred_pairs)
        counts["relaxed"][2] += len(sentence.pairs)
    result: dict[str, float] = {}
    for key in ("drug", "ade", "pair"):
        p, r, f = prf(*counts[key])
        result.update({f"{key}_precision": p, f"{key}_recall": r, f"{key}_f1": f})
    p, r, f = prf(*counts["relaxed"])
    result.update({"pair_precision_relaxed": p, "pair_recall_relaxed": r, "pair_f1_relaxed": f})
    return {k: result[k] for k in METRIC_KEYS}


def note_metrics(records: Sequence[dict[str, Any]], predictions: Sequence[Sequence[AdeFinding]]) -> dict[str, float]:
    """Synthetic-note checks against truth records (``text`` and ``ades`` as in the cohort's notes.jsonl).

    Pairs match on exact drug and event spans, negated or not; for matched pairs: negation accuracy,
    grade accuracy (None must be None) and CTCAE term accuracy.
    """
    tp = n_pred = n_gold = 0
    negation_ok = grade_ok = term_ok = 0
    for record, findings in zip(records, predictions, strict=True):
        gold = {(tuple(a["drug_span"]), tuple(a["event_span"])): a for a in record.get("ades", [])}
        n_gold += len(gold)
        n_pred += len(findings)
        for finding in findings:
            truth = gold.get((finding.drug_span, finding.event_span))
            if truth is None:
                continue
            tp += 1
            negation_ok += finding.negated == bool(truth.get("negated"))
            grade_ok += finding.grade == truth.get("grade")
            term_ok += (finding.ctcae_term or "").lower() == str(truth.get("ctcae_term") or "").lower()
    p, r, f = prf(tp, n_pred, n_gold)
    return {
        "note_pair_precision": p,
        "note_pair_recall": r,
        "note_pair_f1": f,
        "note_negation_accuracy": round(negation_ok / tp, 4) if tp else 0.0,
        "note_grade_accuracy": round(grade_ok / tp, 4) if tp else 0.0,
        "note_ctcae_accuracy": round(term_ok / tp, 4) if tp else 0.0,
    }
