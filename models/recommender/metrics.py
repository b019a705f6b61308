"""Set metrics of a recommendation against what was prescribed, and the threshold calibration.

Per visit: Jaccard, precision, recall and F1 of the recommended set against the prescribed set (an empty
recommended set has precision 0; an empty prescribed set has recall 1 when nothing was recommended,
otherwise 0), averaged over visits. Warnings are pooled over all visits: precision and recall of the warned
drugs against the deliberately overprescribed ones (0.0 when there is nothing to divide by).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VisitOutcome:
    """One visit: what was recommended and warned about, what was prescribed and overprescribed."""

    recommended: frozenset[str]
    prescribed: frozenset[str]
    warned: frozenset[str] = frozenset()
    overprescribed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SetMetrics:
    jaccard: float
    precision: float
    recall: float
    f1: float
    mean_recommended: float
    mean_prescribed: float
    warning_precision: float
    warning_recall: float

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}

    @property
    def warning_f1(self) -> float:
        p, r = self.warning_precision, self.warning_recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _prf(recommended: Collection[str], prescribed: Collection[str]) -> tuple[float, float, float, float]:
    rec, gold = set(recommended), set(prescribed)
    if not rec and not gold:
        return 1.0, 1.0, 1.0, 1.0
    hit = len(rec & gold)
    jaccard = hit / len(rec | gold)
    precision = hit / len(rec) if rec else 0.0
    recall = hit / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return jaccard, precision, recall, f1


def set_metrics(outcomes: Sequence[VisitOutcome]) -> SetMetrics:
    """The evaluation contract's eight numbers over a list of visits."""
    n = max(1, len(outcomes))
    sums = [0.0, 0.0, 0.0, 0.0]
    warned = hits = overprescribed = 0
    for o in outcomes:
        for i, value in enumerate(_prf(o.recommended, o.prescribed)):
            sums[i] += value
        warned += len(o.warned)
        overprescribed += len(o.overprescribed)
        hits += len(o.warned & o.overprescribed)
    return SetMetrics(
        jaccard=sums[0] / n,
        precision=sums[1] / n,
        recall=sums[2] / n,
        f1=sums[3] / n,
        mean_recommended=sum(len(o.recommended) for o in outcomes) / n,
        mean_prescribed=sum(len(o.prescribed) for o in outcomes) / n,
        warning_precision=hits / warned if warned else 0.0,
        warning_recall=hits / overprescribed if overprescribed else 0.0,
    )


@dataclass(frozen=True)
class ScoredVisit:
    """Model scores of one visit's candidates plus its truth, for threshold calibration."""

    scores: Mapping[str, float]
    prescribed: frozenset[str]
    overprescribed: frozenset[str] = frozenset()


def outcomes_at(visits: Sequence[ScoredVisit], threshold: float) -> list[VisitOutcome]:
    """Recommend what scores >= threshold; warn about ordered drugs (prescribed + overprescribed) below it."""
    out = []
    for v in visits:
        ordered = v.prescribed | v.overprescribed
        out.append(
            VisitOutcome(
                recommended=frozenset(d for d, p in v.scores.items() if p >= threshold),
                prescribed=v.prescribed,
                warned=frozenset(d for d in ordered if v.scores.get(d, 0.0) < threshold),
                overprescribed=v.overprescribed,
            )
        )
    return out


def calibrate_threshold(
    visits: Sequence[ScoredVisit], max_size_ratio: float = 1.2, grid: int = 99
) -> tuple[float, SetMetrics]:
    """The recommendation threshold maximising mean per-visit F1.

    Thresholds that recommend more than ``max_size_ratio`` times the prescribed drugs on average are
    skipped unless none qualifies; ties go to the higher threshold (fewer drugs). Warnings have their own
    threshold, calibrated with the overprescription rules by the caller.
    """
    best: tuple[float, float, SetMetrics] | None = None
    fallback: tuple[float, float, SetMetrics] | None = None
    for step in range(1, grid + 1):
        threshold = step / (grid + 1)
        metrics = set_metrics(outcomes_at(visits, threshold))
        objective = metrics.f1
        candidate = (objective, threshold, metrics)
        if fallback is None or candidate[:2] >= fallback[:2]:
            fallback = candidate
        if metrics.mean_recommended <= max_size_ratio * metrics.mean_prescribed and (
            best is None or candidate[:2] >= best[:2]
        ):
            best = candidate
    chosen = best or fallback
    if chosen is None:
        return 0.5, set_metrics([])
    return chosen[1], chosen[2]
