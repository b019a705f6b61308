"""Toxicity evaluation: per-symptom accuracy and macro F1 over present / absent / not_mentioned.

``per_symptom[s].f1`` is the macro F1 over the three statuses for symptom ``s`` (a status that is neither
in the gold nor predicted for that symptom is left out of the average); ``macro_f1`` is the mean of the
per-symptom values, ``macro_f1_pooled`` the three-status macro F1 over all (note, symptom) pairs.
``grade_accuracy`` is over the pairs whose gold status is present with a stated grade: a wrong status
counts as a wrong grade.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.toxicity.labels import STATUSES

Pair = tuple[str, str]  # (gold status, predicted status)


def macro_f1(pairs: Sequence[Pair]) -> float:
    scores: list[float] = []
    for status in STATUSES:
        tp = sum(1 for g, p in pairs if g == status and p == status)
        fp = sum(1 for g, p in pairs if g != status and p == status)
        fn = sum(1 for g, p in pairs if g == status and p != status)
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def toxicity_metrics(
    gold: Sequence[Mapping[str, tuple[str, int | None]]],
    predicted: Sequence[Mapping[str, tuple[str, int | None]]],
    symptoms: Sequence[str],
) -> dict[str, Any]:
    """``gold`` and ``predicted``: one mapping per note, symptom -> (status, grade)."""
    if len(gold) != len(predicted):
        raise ValueError("one prediction per gold note is required")
    per_symptom: dict[str, dict[str, float]] = {}
    pooled: list[Pair] = []
    graded = graded_right = 0
    for symptom in symptoms:
        pairs = [(g[symptom][0], p[symptom][0]) for g, p in zip(gold, predicted, strict=True)]
        pooled += pairs
        correct = sum(1 for g, p in pairs if g == p)
        per_symptom[symptom] = {
            "accuracy": correct / len(pairs) if pairs else 0.0,
            "f1": macro_f1(pairs),
            "support_present": float(sum(1 for g, _ in pairs if g == "present")),
        }
        for g, p in zip(gold, predicted, strict=True):
            g_status, g_grade = g[symptom]
            if g_status == "present" and g_grade is not None:
                graded += 1
                graded_right += int(p[symptom] == ("present", g_grade))
    return {
        "macro_f1": sum(v["f1"] for v in per_symptom.values()) / len(per_symptom) if per_symptom else 0.0,
        "macro_f1_pooled": macro_f1(pooled),
        "accuracy": sum(1 for g, p in pooled if g == p) / len(pooled) if pooled else 0.0,
        "grade_accuracy": graded_right / graded if graded else None,
        "graded_mentions": graded,
        "notes": len(gold),
        "per_symptom": per_symptom,
    }
