"""Evaluation of the recommender and its baselines on visits, through the real overprescription decision.

Every method (the model, ``all``, ``top_k``, ``cooccurrence``) yields a score per drug of each visit and a
threshold; the same :func:`decide_overprescription` turns those into warnings, so baselines get the hard
rules too and the comparison isolates the scores. Per visit:

- recommended = the visit's drugs (candidates + ordered) scoring >= the method's threshold;
- prescribed (the reference) = prescribed minus overprescribed: a deliberate overprescription is never a
  correct recommendation even when a data set also lists it as prescribed;
- orders = the previous medications as *active* orders and the ordered drugs (prescribed + overprescribed)
  as *drafts*; warned = the drafts the decision warns about;
- prior events = the "grade N <event> on <drug> (<date>)" phrases of the history (the only place a
  visits.jsonl line carries recorded adverse events), and the tumour phenotype its "tumour phenotype: ..."
  clause (``cds.recommender_tumour``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cds.formulary import Formulary
from cds.overprescription import Order, PriorEvent, decide_overprescription
from cds.recommender_tumour import phenotype_of
from models.recommender.baselines import Baselines
from models.recommender.metrics import SetMetrics, VisitOutcome, set_metrics
from models.recommender.visits import TrainingVisit

_EVENT = re.compile(r"grade\s+([1-5])\s+([^;()]+?)\s+on\s+([a-z0-9][a-z0-9 /\-]*?)\s*\((\d{4}-\d{2}-\d{2})\)", re.I)

ScoreFn = Callable[[TrainingVisit], dict[str, float]]


@dataclass(frozen=True)
class Method:
    name: str
    scores: Sequence[dict[str, float]]  # one dict per visit, over the visit's universe
    threshold: float
    warning_threshold: float | None = None  # None: the same as ``threshold``


def prior_events_from_history(history: str) -> list[PriorEvent]:
    return [
        PriorEvent(drug=m.group(3).strip().lower(), grade=int(m.group(1)), event=m.group(2).strip(), date=m.group(4))
        for m in _EVENT.finditer(history)
    ]


def visit_orders(visit: TrainingVisit) -> list[Order]:
    ordered = dict.fromkeys((*visit.prescribed, *visit.overprescribed))
    active = [Order(d, status="active") for d in visit.patient.previous_medications]
    return [*active, *(Order(d, status="draft") for d in ordered)]


def outcome(
    visit: TrainingVisit,
    scores: dict[str, float],
    threshold: float,
    formulary: Formulary,
    warning_threshold: float | None = None,
) -> VisitOutcome:
    warnings = decide_overprescription(
        visit_orders(visit),
        visit.patient.conditions,
        prior_events_from_history(visit.patient.history),
        scores,
        threshold,
        formulary,
        warning_threshold=warning_threshold,
        tumour_phenotype=phenotype_of(visit.patient.history),
    )
    return VisitOutcome(
        recommended=frozenset(d for d in visit.universe if scores.get(d, 0.0) >= threshold),
        prescribed=frozenset(visit.appropriate),
        warned=frozenset(w.drug for w in warnings),
        overprescribed=frozenset(visit.overprescribed),
    )


def evaluate_method(visits: Sequence[TrainingVisit], method: Method, formulary: Formulary) -> SetMetrics:
    return set_metrics(
        [
            outcome(v, s, method.threshold, formulary, method.warning_threshold)
            for v, s in zip(visits, method.scores, strict=True)
        ]
    )


def baseline_methods(visits: Sequence[TrainingVisit], baselines: Baselines) -> list[Method]:
    return [
        Method("all", [baselines.all_scores(v.universe) for v in visits], 0.5),
        Method("top_k", [baselines.top_k_scores(v.universe) for v in visits], 0.5),
        Method(
            "cooccurrence",
            [baselines.cooccurrence_scores(v.patient.conditions, v.universe) for v in visits],
            baselines.cooccurrence_threshold,
        ),
    ]


def contract_report(
    visits: Sequence[TrainingVisit],
    model_scores: Sequence[dict[str, float]],
    threshold: float,
    baselines: Baselines,
    formulary: Formulary,
    warning_threshold: float | None = None,
) -> dict[str, Any]:
    """``{"model": M, "baselines": {"all": M, "top_k": M, "cooccurrence": M}}`` with M the eight metrics."""
    model = evaluate_method(visits, Method("model", model_scores, threshold, warning_threshold), formulary)
    return {
        "model": model.to_json(),
        "baselines": {
            m.name: evaluate_method(visits, m, formulary).to_json() for m in baseline_methods(visits, baselines)
        },
    }


WARNING_GRID = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def calibrate_warning_threshold(
    visits: Sequence[TrainingVisit],
    model_scores: Sequence[dict[str, float]],
    threshold: float,
    formulary: Formulary,
) -> tuple[float, SetMetrics]:
    """The warning threshold (at most ``threshold``) maximising warning F1 through the full decision.

    Ties go to the higher threshold (more recall). Without any overprescription in ``visits`` the warning
    threshold is the recommendation threshold itself.
    """
    grid = sorted({w for w in WARNING_GRID if w < threshold} | {threshold})
    best: tuple[float, float, SetMetrics] | None = None
    for w in grid:
        metrics = evaluate_method(visits, Method("model", model_scores, threshold, w), formulary)
        if best is None or (metrics.warning_f1, w) >= best[:2]:
            best = (metrics.warning_f1, w, metrics)
    if best is None or not any(v.overprescribed for v in visits):
        return threshold, evaluate_method(visits, Method("model", model_scores, threshold), formulary)
    return best[1], best[2]
