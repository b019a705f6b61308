"""Which ordered drugs look like overprescription, and why (a pure function over typed records).

Policy (what ``decide_overprescription`` warns about). The recommender gives each order P(yes); it is
*recommended* at or above ``threshold`` and *judged wrong* below ``warning_threshold`` (defaults to
``threshold``; calibrated lower on the dev split so that a warning means a confident "no"):

1. Only **draft** orders are judged (``include_active=True`` judges active ones too); active orders are the
   context a draft is compared against.
2. **Model**: a draft scoring below ``warning_threshold`` is warned about, with the reason ``low_score`` and
   every rule-based reason that also holds.
3. **Hard rules warn whatever the score** (the model may be uncertain or wrong; these are facts of the record):
   - ``duplicate_therapy``: another drug of the same formulary class is active or also drafted. A draft that
     continues an active order of the same drug is never the duplicate; among several new drafts of one
     class, all but the best-scored are.
   - ``prior_serious_ade``: the patient has a recorded adverse event of grade >= 3 attributed to this drug
     (matched by RxCUI, else by formulary ingredient name).
   - ``biomarker_mismatch``: the tumour phenotype extracted from the patient's notes rules the drug out
     under its label (trastuzumab for a HER2-negative tumour, cetuximab for a KRAS-mutant one); the detail
     says the finding came from the notes, so the prescriber can weigh it against the record.
4. **Soft rule + model doubt**: ``no_indication`` (the formulary knows the drug's indications and none matches
   an active condition, the order's own stated reason, nor the tumour phenotype: "HER2-positive" from a
   pathology note indicates trastuzumab when the coded diagnosis only says breast cancer) warns only when the
   model does not recommend the drug either (score below ``threshold``): formularies miss off-label use, and
   the model has seen the whole patient.
5. A draft without a score (no model available) can only be warned about by the hard rules.

Warnings come out in order of the drafts, one per draft, reasons in a fixed order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cds.formulary import Formulary, FormularyDrug

OrderStatus = Literal["active", "draft"]
ReasonKind = Literal["low_score", "duplicate_therapy", "prior_serious_ade", "biomarker_mismatch", "no_indication"]
HARD_RULES: frozenset[ReasonKind] = frozenset({"duplicate_therapy", "prior_serious_ade", "biomarker_mismatch"})
SERIOUS_GRADE = 3
_ORDER: tuple[ReasonKind, ...] = (
    "low_score",
    "duplicate_therapy",
    "prior_serious_ade",
    "biomarker_mismatch",
    "no_indication",
)


@dataclass(frozen=True)
class Order:
    """A medication order: ``drug`` is an ingredient name or product text; ``rxnorm`` an RxCUI if known."""

    drug: str
    rxnorm: str | None = None
    medication_request_id: str | None = None
    status: OrderStatus = "draft"
    reasons: tuple[str, ...] = ()  # the order's own stated reasons (MedicationRequest.reasonCode)


@dataclass(frozen=True)
class PriorEvent:
    """A recorded adverse event attributed to a drug (from the AdverseEvents the sync wrote)."""

    drug: str
    rxnorm: str | None = None
    grade: int | None = None
    event: str = ""
    date: str | None = None


@dataclass(frozen=True)
class WarningReason:
    kind: ReasonKind
    detail: str


@dataclass(frozen=True)
class OverprescriptionWarning:
    drug: str
    rxnorm: str | None
    medication_request_id: str | None
    reasons: tuple[WarningReason, ...]
    score: float | None

    @property
    def kinds(self) -> tuple[ReasonKind, ...]:
        return tuple(r.kind for r in self.reasons)

    @property
    def hard(self) -> bool:
        """True when a hard rule fired (the warning stands whatever the model says)."""
        return any(r.kind in HARD_RULES for r in self.reasons)


def _key(order_drug: str, entry: FormularyDrug | None) -> str:
    return entry.name if entry is not None else " ".join(order_drug.lower().split())


def _score(scores: Mapping[str, float], order: Order, entry: FormularyDrug | None) -> float | None:
    for key in (order.drug, order.drug.lower().strip(), entry.name if entry else None):
        if key is not None and key in scores:
            return scores[key]
    return None


def decide_overprescription(
    orders: Sequence[Order],
    patient_conditions: Iterable[str],
    prior_events: Iterable[PriorEvent],
    scores: Mapping[str, float],
    threshold: float,
    formulary: Formulary,
    include_active: bool = False,
    warning_threshold: float | None = None,
    tumour_phenotype: Sequence[str] = (),
) -> list[OverprescriptionWarning]:
    """Warnings for the judged orders under the policy in the module docstring.

    ``tumour_phenotype`` holds the phrases the notes stage extracted ("HER2-positive", "KRAS-mutant").
    """
    warn_below = threshold if warning_threshold is None else warning_threshold
    conditions = list(patient_conditions)
    entries = [formulary.lookup(o.drug, o.rxnorm) for o in orders]
    keys = [_key(o.drug, e) for o, e in zip(orders, entries, strict=True)]
    order_scores = [_score(scores, o, e) for o, e in zip(orders, entries, strict=True)]
    active = {k for o, k in zip(orders, keys, strict=True) if o.status == "active"}
    serious = _serious_events(prior_events, formulary)
    warnings: list[OverprescriptionWarning] = []
    for i, order in enumerate(orders):
        if order.status != "draft" and not include_active:
            continue
        entry, key, score = entries[i], keys[i], order_scores[i]
        reasons: dict[ReasonKind, str] = {}
        if score is not None and score < warn_below:
            reasons["low_score"] = f"recommender P(yes) {score:.2f} is below the warning threshold {warn_below:.2f}"
        duplicate = _duplicate_of(i, orders, entries, keys, order_scores, active)
        if duplicate is not None and entry is not None:
            reasons["duplicate_therapy"] = f"{duplicate} is also ordered (same class: {entry.drug_class})"
        event = serious.get(key) or (serious.get(order.rxnorm) if order.rxnorm else None)
        if event is not None:
            reasons["prior_serious_ade"] = _event_text(event)
        excluded = formulary.excluded_by(entry, tumour_phenotype) if entry is not None else None
        if excluded is not None and entry is not None:
            reasons["biomarker_mismatch"] = (
                f"the tumour is {excluded} in the patient's notes (extracted phenotype), "
                f"which rules out {entry.name} under its label"
            )
        indications = [*conditions, *order.reasons, *tumour_phenotype]
        if entry is not None and entry.indications and not formulary.indicated(entry, indications):
            shown = "; ".join(conditions) if conditions else "none recorded"
            reasons["no_indication"] = f"no active condition indicates {entry.name} (conditions: {shown})"
        doubted = "no_indication" in reasons and score is not None and score < threshold
        if doubted and "low_score" not in reasons:
            reasons["low_score"] = (
                f"recommender P(yes) {score:.2f} is below the recommendation threshold {threshold:.2f}"
            )
        if "low_score" in reasons or any(k in HARD_RULES for k in reasons):
            warnings.append(
                OverprescriptionWarning(
                    drug=order.drug,
                    rxnorm=order.rxnorm or (entry.rxnorm if entry else None),
                    medication_request_id=order.medication_request_id,
                    reasons=tuple(WarningReason(k, reasons[k]) for k in _ORDER if k in reasons),
                    score=score,
                )
            )
    return warnings


def _duplicate_of(
    i: int,
    orders: Sequence[Order],
    entries: Sequence[FormularyDrug | None],
    keys: Sequence[str],
    scores: Sequence[float | None],
    active: set[str],
) -> str | None:
    """The drug this order duplicates, or None (see rule 3 of the policy)."""
    entry = entries[i]
    if entry is None or keys[i] in active:
        return None
    same = [
        j
        for j, e in enumerate(entries)
        if j != i and e is not None and e.drug_class == entry.drug_class and keys[j] != keys[i]
    ]
    for j in same:
        if keys[j] in active:
            return keys[j]
    new = [j for j in same if orders[j].status == "draft"]
    if not new:
        return None

    # Among new drafts of one class the best-scored one stays (ties: the first ordered); the rest duplicate it.
    def rank(j: int) -> tuple[float, int]:
        score = scores[j]
        return (-score if score is not None else 1.0, j)

    ranked = sorted([i, *new], key=rank)
    return None if ranked[0] == i else keys[ranked[0]]


def _serious_events(events: Iterable[PriorEvent], formulary: Formulary) -> dict[str, PriorEvent]:
    found: dict[str, PriorEvent] = {}
    for event in events:
        if event.grade is None or event.grade < SERIOUS_GRADE:
            continue
        entry = formulary.lookup(event.drug, event.rxnorm)
        for key in (_key(event.drug, entry), event.rxnorm, entry.rxnorm if entry else None):
            if key and (key not in found or (found[key].grade or 0) < event.grade):
                found[key] = event
    return found


def _event_text(event: PriorEvent) -> str:
    what = event.event or "adverse event"
    when = f" on {event.date}" if event.date else ""
    return f"grade {event.grade} {what} recorded with {event.drug}{when}"
