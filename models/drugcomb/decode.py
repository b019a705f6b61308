"""Turn per-candidate class probabilities into the relations reported for a sentence.

Scoring every drug subset yields overlapping, often nested, predictions ("A+B" and "A+B+C" for the same
regimen). Gold relations of one sentence overlap often but are rarely nested, so the default keeps the
most confident combination and drops any other that is a subset or superset of a kept one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.drugcomb.candidates import CLASS_LABELS, NO_COMB

Strategy = Literal["non_nested", "largest_disjoint", "all"]


@dataclass(frozen=True)
class CandidateDecision:
    """A kept candidate: positions into the sentence's drug spans, its class and the class probability."""

    members: tuple[int, ...]
    label: str
    confidence: float


def decide(
    candidates: Sequence[tuple[int, ...]],
    probabilities: np.ndarray,
    threshold: float = 0.5,
    strategy: Strategy = "non_nested",
) -> list[CandidateDecision]:
    """Candidates whose P(any combination) >= ``threshold``, labelled by their most likely relation class."""
    if len(candidates) != len(probabilities):
        raise ValueError("one probability row per candidate is required")
    no_comb = CLASS_LABELS.index(NO_COMB)
    scored: list[tuple[float, CandidateDecision]] = []
    for members, row in zip(candidates, probabilities, strict=True):
        p_comb = 1.0 - float(row[no_comb])
        if p_comb < threshold:
            continue
        best = max((i for i in range(len(CLASS_LABELS)) if i != no_comb), key=lambda i: float(row[i]))
        scored.append((p_comb, CandidateDecision(tuple(members), CLASS_LABELS[best], float(row[best]))))
    if strategy == "all":
        return [d for _, d in scored]
    if strategy == "largest_disjoint":
        scored.sort(key=lambda x: (-len(x[1].members), -x[0]))
    else:
        scored.sort(key=lambda x: -x[0])
    kept: list[CandidateDecision] = []
    for _, decision in scored:
        mine = set(decision.members)
        if strategy == "largest_disjoint":
            clash = any(mine & set(k.members) for k in kept)
        else:
            clash = any(mine <= set(k.members) or mine >= set(k.members) for k in kept)
        if not clash:
            kept.append(decision)
    return kept
