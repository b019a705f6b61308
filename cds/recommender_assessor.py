"""The order assessor of the CDS service: patient context -> LAMO summary -> scores -> overprescription rules.

Implements ``cds.decisions.OrderAssessor``. The summary mirrors the training visits: active condition
labels (SNOMED semantic tags dropped, lower case), the active orders that are not being drafted now as
previous medications, the allergies, and a history made of the patient's recorded serious adverse events
("grade 3 proteinuria on bevacizumab (2025-08-21)"), never note text. Scoring is CPU-bound onnxruntime work,
so it runs in a worker thread; the rules are pure (``cds.overprescription``).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence

from adapters import MedicationOrder, PatientContext, RecordedAdverseEvent
from cds.decisions import OrderWarning
from cds.formulary import Formulary
from cds.overprescription import Order, PriorEvent, decide_overprescription
from cds.recommender_tumour import history_with_phenotype
from models.recommender import MedicationRecommender, PatientSummary

_TAG = re.compile(r"\s*\((disorder|finding|situation|morphologic abnormality)\)\s*$")
_INACTIVE = frozenset({"inactive", "resolved", "remission"})


def drug_name(order: MedicationOrder, formulary: Formulary) -> str:
    """The ingredient name the recommender and the formulary use for an order."""
    entry = formulary.lookup(order.ingredient, order.rxnorm_code) or formulary.from_product_text(order.display or "")
    if entry is not None:
        return entry.name
    return " ".join((order.ingredient or order.display or order.rxnorm_code or "unknown drug").lower().split())


def prior_events(events: Sequence[RecordedAdverseEvent]) -> list[PriorEvent]:
    return [
        PriorEvent(
            drug=(e.drug_display or e.drug_rxnorm or "").lower(),
            rxnorm=e.drug_rxnorm,
            grade=e.grade,
            event=(e.ctcae_term or "adverse event").lower(),
            date=e.date.date().isoformat() if e.date else None,
        )
        for e in events
    ]


def patient_summary(
    context: PatientContext,
    drafts: Sequence[MedicationOrder],
    prior: Sequence[PriorEvent],
    formulary: Formulary,
    phenotype: Sequence[str] = (),
) -> PatientSummary:
    drafted = {d.id for d in drafts}
    conditions = [
        _TAG.sub("", label).strip().lower()
        for c in context.conditions
        if (label := c.text or c.display) and (c.clinical_status or "active") not in _INACTIVE
    ]
    previous = [drug_name(m, formulary) for m in context.medications if m.is_active and m.id not in drafted]
    serious = [
        f"grade {e.grade} {e.event} on {e.drug}" + (f" ({e.date})" if e.date else "")
        for e in prior
        if e.grade is not None and e.grade >= 3
    ]
    return PatientSummary(
        age=context.age if context.age is not None else -1,
        sex=context.sex or "unknown",
        conditions=tuple(dict.fromkeys(conditions)),
        previous_medications=tuple(dict.fromkeys(previous)),
        allergies=tuple(context.allergies),
        # The tumour phenotype goes into the history line, not the conditions: "HER2-positive" is a property
        # of the cancer, not a condition of its own (the policy reads it separately, as ``tumour_phenotype``).
        history=history_with_phenotype(phenotype, serious),
    )


class RecommenderAssessor:
    """Scores drafts with the recommender (when built) and applies the overprescription policy."""

    def __init__(
        self,
        recommender: MedicationRecommender | None,
        formulary: Formulary,
        phenotypes: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self._recommender = recommender
        self._formulary = formulary
        self._phenotypes = phenotypes  # patient id -> phrases from the sync's phenotype findings

    def _scores(self, summary: PatientSummary, names: list[str]) -> dict[str, float]:
        if self._recommender is None or not names:
            return {}
        return {s.drug: s.p_yes for s in self._recommender.score(summary, names)}

    async def assess(
        self, context: PatientContext, drafts: Sequence[MedicationOrder], prior: Sequence[RecordedAdverseEvent]
    ) -> list[OrderWarning]:
        events = prior_events(prior)
        # a state-database read: off the event loop, like every other one in the request path
        phenotype: Sequence[str] = ()
        if self._phenotypes is not None:
            phenotype = await asyncio.to_thread(self._phenotypes, context.patient_id)
        summary = patient_summary(context, drafts, events, self._formulary, phenotype)
        names = [drug_name(d, self._formulary) for d in drafts]
        scores = await asyncio.to_thread(self._scores, summary, list(dict.fromkeys(names)))
        drafted = {d.id for d in drafts}
        orders = [
            Order(drug_name(m, self._formulary), m.rxnorm_code, m.id, "active", m.reasons)
            for m in context.medications
            if m.is_active and m.id not in drafted
        ]
        orders += [Order(n, d.rxnorm_code, d.id, "draft", d.reasons) for n, d in zip(names, drafts, strict=True)]
        model = self._recommender
        threshold = model.threshold if model is not None else 0.0
        warnings = decide_overprescription(
            orders,
            summary.conditions,
            events,
            scores,
            threshold,
            self._formulary,
            warning_threshold=model.warning_threshold if model is not None else None,
            tumour_phenotype=phenotype,
        )
        displays = {d.id: d.display or n for n, d in zip(names, drafts, strict=True)}
        return [
            OrderWarning(
                medication_request_id=w.medication_request_id or "",
                drug_display=displays.get(w.medication_request_id or "", w.drug),
                reasons=tuple(r.detail for r in w.reasons),
                score=w.score if w.score is not None else math.nan,
                kinds=w.kinds,
            )
            for w in warnings
        ]
