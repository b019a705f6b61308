"""One patient's course, visit by visit: notes, orders, deliberate overprescriptions, and their truth."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from cds.cohort import fhir
from cds.cohort.codes import DRUGS, DUPLICATE_PAIRS
from cds.cohort.ctcae import CtcaeTerm
from cds.cohort.lexicon import DRUG_EVENTS, SYMPTOMS
from cds.cohort.notes import ComposedNote, NoteContext, compose_consult, compose_progress
from cds.cohort.plan import PatientPlan, VisitPlan
from cds.cohort.radiotherapy import compose_radiotherapy
from cds.cohort.records import (
    AdeTruth,
    CombinationTruth,
    NoteTruth,
    OverprescriptionTruth,
    ToxicityTruth,
    VisitPatient,
    VisitTruth,
)
from cds.cohort.sentences import Phraser
from cds.errors import CohortError

# Ingredients re-ordered only every few cycles (a depot injection lasts three months).
_REORDER_EVERY = {"leuprolide": 3}
_ENCOUNTER_TEXT = {
    "consult": "Medical oncology consultation",
    "progress": "Medical oncology follow-up",
    "radiotherapy": "Radiation oncology on-treatment visit",
}


@dataclass
class Order:
    mr_id: str
    drug: str
    visit: VisitPlan
    encounter_id: str
    overprescription: str | None = None
    indication: str | None = None


@dataclass
class PatientOutput:
    resources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[NoteTruth] = field(default_factory=list)
    overprescriptions: list[OverprescriptionTruth] = field(default_factory=list)
    visits: list[VisitTruth] = field(default_factory=list)


class PatientCourse:
    """Walks a patient's calendar; all randomness comes from the patient's own ``rng``."""

    def __init__(self, plan: PatientPlan, rng: random.Random, ctcae: dict[str, CtcaeTerm]) -> None:
        self._plan = plan
        self._rng = rng
        self._ctcae = ctcae
        self._phraser = Phraser(rng, plan.sex)
        self._orders: list[Order] = []
        self._stopped: set[str] = set()
        self._held: str | None = None  # the drug of a deliberate "prior serious ADE" re-order
        self._serious_history: list[str] = []
        self._cancer_condition = f"ov-cond-{plan.index:04d}-01"

    def _id(self, kind: str, number: int) -> str:
        return f"ov-{kind}-{self._plan.index:04d}-{number:02d}"

    def build(self) -> PatientOutput:
        out = PatientOutput()
        out.resources += self._static_resources()
        encounters: list[dict[str, Any]] = []
        documents: list[dict[str, Any]] = []
        for visit in self._plan.visits:
            eid, nid = self._id("enc", visit.number), self._id("note", visit.number)
            hour = 9 + (visit.number % 6)
            encounters.append(
                fhir.encounter(
                    eid,
                    self._plan.patient_id,
                    _ENCOUNTER_TEXT[visit.kind],
                    visit.day,
                    hour,
                    self._plan.cancer.snomed,
                )
            )
            ordered_before = self._ordered_drugs()
            given_today = self._scheduled(visit)
            ctx = NoteContext(self._plan, visit, ordered_before, given_today, self._ctcae)
            if self._plan.overprescription == "prior_serious_ade" and visit.cycle == 2:
                ctx.forced_serious = self._serious_target(ordered_before)
            if self._held is not None and visit.cycle > 2 and ctx.forced_serious is None:
                ctx.resume = self._held
            note = self._compose(ctx)
            documents.append(
                fhir.document_reference(
                    nid, self._plan.patient_id, eid, visit.kind, note.title, note.draft.text, visit.day, hour
                )
            )
            out.notes.append(self._note_truth(nid, eid, visit, note))
            new_orders = self._place_orders(visit, eid, given_today, note, ctx)
            if new_orders:
                out.visits.append(self._visit_truth(visit, eid, new_orders))
            for order in new_orders:
                if order.overprescription is not None:
                    out.overprescriptions.append(
                        OverprescriptionTruth(
                            self._plan.patient_id,
                            order.mr_id,
                            order.drug,
                            DRUGS[order.drug].rxnorm,
                            order.overprescription,
                            eid,
                            visit.day.isoformat(),
                        )
                    )
        out.resources += encounters
        out.resources += self._medication_requests()
        radio = self._plan.radiotherapy
        if radio is not None:
            out.resources.append(
                fhir.radiotherapy(
                    self._id("proc", 1),
                    self._plan.patient_id,
                    radio.site,
                    radio.dose_gy,
                    radio.fractions,
                    radio.start,
                    radio.end,
                    self._cancer_condition,
                )
            )
        out.resources += documents
        return out

    # -- resources that do not change over the course -----------------------------------------

    def _static_resources(self) -> list[dict[str, Any]]:
        plan = self._plan
        pid = plan.patient_id
        res = [fhir.patient(pid, plan.index, plan.given, plan.family, plan.sex, plan.birth)]
        cancer = plan.cancer
        res.append(
            fhir.condition(
                self._cancer_condition,
                pid,
                cancer.snomed,
                cancer.icd10[0],
                cancer.label,
                plan.start,
                plan.stage,
            )
        )
        for k, (label, code, display, icd) in enumerate(plan.comorbidities, start=2):
            res.append(
                fhir.condition(
                    self._id("cond", k),
                    pid,
                    (code, display),
                    icd,
                    label,
                    plan.birth.replace(year=plan.start.year - 3),
                )
            )
        if cancer.her2 is not None:
            res.append(fhir.her2_observation(self._id("obs", 1), pid, cancer.her2 == "positive", plan.start))
        for k, substance in enumerate(plan.allergies, start=1):
            res.append(fhir.allergy(self._id("allergy", k), pid, substance, plan.start))
        return res

    # -- what is ordered -----------------------------------------------------------------------

    def _ordered_drugs(self) -> list[str]:
        seen: list[str] = []
        for order in self._orders:
            if order.drug not in seen:
                seen.append(order.drug)
        return seen

    def _scheduled(self, visit: VisitPlan) -> list[str]:
        """Regimen drugs due at this visit, before any deliberate change."""
        if visit.cycle == 0:
            return []
        regimen = self._plan.regimen
        due = [
            d
            for d in regimen.drugs
            if d not in self._stopped and d != self._held and (visit.cycle - 1) % _REORDER_EVERY.get(d, 1) == 0
        ]
        if visit.cycle in (1, 3):
            due += [d for d in regimen.supportive if d not in self._stopped]
        return due

    def _serious_target(self, ordered_before: list[str]) -> str | None:
        candidates = [
            d
            for d in self._plan.regimen.drugs
            if d in ordered_before and any(self._ctcae[x].max_grade >= 3 for x in DRUG_EVENTS[d])
        ]
        return self._rng.choice(candidates) if candidates else None

    def _compose(self, ctx: NoteContext) -> ComposedNote:
        kind = ctx.visit.kind
        if kind == "consult":
            return compose_consult(self._rng, self._phraser, ctx)
        if kind == "radiotherapy":
            return compose_radiotherapy(self._rng, self._phraser, ctx)
        return compose_progress(self._rng, self._phraser, ctx)

    def _place_orders(
        self, visit: VisitPlan, eid: str, due: list[str], note: ComposedNote, ctx: NoteContext
    ) -> list[Order]:
        for ade in note.draft.ades:
            m = ade.mention
            if m.grade is not None and m.grade >= 3 and not m.negated:
                self._serious_history.append(
                    f"grade {m.grade} {m.ctcae_term.lower()} on {m.drug} ({visit.day.isoformat()})"
                )
        for drug in note.serious:
            if drug == ctx.forced_serious:
                self._held = drug
            else:
                self._stopped.add(drug)
        items: list[tuple[str, str | None, str | None]] = [
            (d, None, None) for d in due if d not in self._stopped and d != self._held
        ]
        if ctx.resume is not None:
            items.append((ctx.resume, "prior_serious_ade", None))
            self._stopped.add(ctx.resume)
            self._held = None
        items += [(d, None, why) for d, why in note.extra_orders]
        if visit.cycle == 2 and self._plan.overprescription in ("duplicate_therapy", "no_indication"):
            extra = self._deliberate(self._plan.overprescription, [d for d, _, _ in items])
            if extra is not None:
                items.append((extra, self._plan.overprescription, None))
        placed: list[Order] = []
        for drug, reason, indication in items:
            order = Order(self._id("mr", len(self._orders) + 1), drug, visit, eid, reason, indication)
            self._orders.append(order)
            placed.append(order)
        return placed

    def _deliberate(self, reason: str, today: list[str]) -> str | None:
        if reason == "no_indication":
            return "rituximab" if self._plan.cancer.her2 == "positive" else "trastuzumab"
        active = set(self._ordered_drugs()) | set(today)
        pairs = list(DUPLICATE_PAIRS)
        self._rng.shuffle(pairs)
        for existing, duplicate in pairs:
            if existing in active and duplicate not in active and existing not in self._stopped:
                return duplicate
        return None

    def _medication_requests(self) -> list[dict[str, Any]]:
        last = {o.drug: o.mr_id for o in self._orders}
        out = []
        for o in self._orders:
            status = "active"
            if last[o.drug] != o.mr_id:
                status = "completed"
            elif o.drug in self._stopped:
                status = "stopped"
            hour = 9 + (o.visit.number % 6)
            condition = None if o.indication else self._cancer_condition
            out.append(
                fhir.medication_request(
                    o.mr_id,
                    self._plan.patient_id,
                    o.drug,
                    status,
                    o.encounter_id,
                    o.visit.day,
                    hour,
                    condition,
                    o.indication,
                )
            )
        return out

    # -- truth -----------------------------------------------------------------------------------

    def _note_truth(self, nid: str, eid: str, visit: VisitPlan, note: ComposedNote) -> NoteTruth:
        text = note.draft.text
        last_order = {o.drug: o.mr_id for o in self._orders}  # orders of earlier visits only, at this point
        ades = []
        tox: dict[str, ToxicityTruth] = {}
        for placed in note.draft.ades:
            m = placed.mention
            term = self._ctcae[m.ctcae_term]
            ades.append(
                AdeTruth(
                    m.drug,
                    DRUGS[m.drug].rxnorm,
                    text[slice(*placed.event_span)],
                    term.term,
                    term.meddra_code,
                    m.grade,
                    m.negated,
                    placed.drug_span,
                    placed.event_span,
                    last_order.get(m.drug),
                )
            )
            if m.ctcae_term.lower() in SYMPTOMS:
                status = "absent" if m.negated else "present"
                _merge(tox, m.ctcae_term.lower(), ToxicityTruth(status, m.grade, placed.event_span), nid)
        for placed_tox in note.draft.toxicities:
            t = placed_tox.mention
            _merge(tox, t.symptom, ToxicityTruth(t.status, t.grade, placed_tox.span), nid)
        toxicities = {s: tox.get(s, ToxicityTruth("not_mentioned", None)) for s in SYMPTOMS}
        combos = tuple(
            CombinationTruth(c.mention.drugs, c.mention.label, c.sentence_span, c.drug_spans) for c in note.draft.combos
        )
        return NoteTruth(
            nid,
            self._plan.patient_id,
            visit.day.isoformat(),
            visit.kind,
            text,
            tuple(ades),
            toxicities,
            combos,
            eid,
        )

    def _visit_truth(self, visit: VisitPlan, eid: str, orders: list[Order]) -> VisitTruth:
        plan = self._plan
        prescribed = _unique(o.drug for o in orders)
        earlier = _unique(o.drug for o in self._orders if o.visit.day < visit.day)
        decoys = self._rng.sample(sorted(d for d in DRUGS if d not in prescribed), 3)
        candidates = prescribed + decoys
        self._rng.shuffle(candidates)
        history = f"{plan.stage} {plan.cancer.label}; regimen {plan.regimen.name}"
        if plan.prior is not None:
            history += f"; progressed on {plan.prior.name}"
        if plan.radiotherapy is not None and plan.radiotherapy.start <= visit.day:
            history += f"; radiotherapy to the {plan.radiotherapy.site}"
        if self._serious_history:
            history += "; " + "; ".join(self._serious_history)
        patient = VisitPatient(
            plan.age_on(visit.day),
            plan.sex,
            (plan.cancer.label, *(c[0] for c in plan.comorbidities)),
            tuple(earlier),
            plan.allergies,
            history,
        )
        flagged = _unique(o.drug for o in orders if o.overprescription is not None)
        return VisitTruth(
            eid,
            patient,
            tuple(candidates),
            tuple(prescribed),
            tuple(flagged),
            plan.patient_id,
            visit.day.isoformat(),
            tuple(o.mr_id for o in orders),
        )


def _unique(items: Any) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _merge(tox: dict[str, ToxicityTruth], symptom: str, new: ToxicityTruth, note_id: str) -> None:
    old = tox.get(symptom)
    if old is None:
        tox[symptom] = new
    elif old.status != new.status:
        raise CohortError(
            "OV-0042",
            f"note {note_id} states {symptom} both {old.status} and {new.status}; "
            "this is a generator bug, please report it",
        )
