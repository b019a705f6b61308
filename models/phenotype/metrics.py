"""Per-field exact match and F1 of predicted phenotypes against the truth (normalised values).

Exact match: share of notes whose value equals the truth (both absent counts as a match).
F1: a predicted value equal to a stated truth is a true positive; any other predicted value a false
positive; a stated truth not predicted exactly a false negative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.phenotype.labels import FIELDS

Values = Mapping[str, str | None]


def field_metrics(truths: Sequence[Values], predictions: Sequence[Values]) -> dict[str, Any]:
    per_field: dict[str, dict[str, float]] = {}
    total_tp = total_fp = total_fn = 0
    for name in FIELDS:
        tp = fp = fn = exact = support = 0
        for truth, pred in zip(truths, predictions, strict=True):
            t, p = truth.get(name), pred.get(name)
            exact += int(t == p)
            support += int(t is not None)
            if p is not None and p == t:
                tp += 1
            else:
                fp += int(p is not None)
                fn += int(t is not None)
        total_tp, total_fp, total_fn = total_tp + tp, total_fp + fp, total_fn + fn
        per_field[name] = {**_prf(tp, fp, fn), "exact_match": _ratio(exact, len(truths)), "support": support}
    scored = [m for m in per_field.values() if m["support"]]
    return {
        "notes": len(truths),
        "micro": _prf(total_tp, total_fp, total_fn),
        "macro_f1": _ratio(sum(m["f1"] for m in scored), len(scored)),
        "macro_exact_match": _ratio(sum(m["exact_match"] for m in per_field.values()), len(per_field)),
        "per_field": per_field,
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 0.0


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
