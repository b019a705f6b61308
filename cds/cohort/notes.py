"""Consultation and progress notes: which facts a visit's note states, and in what order.

The course (``course.py``) decides what happened; this module decides what the note says about
it and records every stated fact through ``NoteDraft``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from cds.cohort import templates as t
from cds.cohort.codes import DRUGS
from cds.cohort.ctcae import CtcaeTerm
from cds.cohort.lexicon import DRUG_EVENTS, SYMPTOMS, TREATS
from cds.cohort.plan import PatientPlan, VisitPlan
from cds.cohort.sentences import Phraser
from cds.cohort.text import Fragment, NoteDraft, Sentence, join_sentences, render, sentence_case

_GRADES: tuple[int | None, ...] = (None, 1, 2, 3, 4)
_GRADE_WEIGHTS = (15, 40, 35, 8, 2)
ACRONYMS = frozenset({"FOLFOX", "CAPOX", "TCHP", "TH", "AC-T", "TC", "R-CHOP"})


@dataclass
class NoteContext:
    """What the note may talk about: drugs ordered before this visit, drugs given today."""

    plan: PatientPlan
    visit: VisitPlan
    ordered_before: list[str]
    given_today: list[str]
    ctcae: dict[str, CtcaeTerm]
    forced_serious: str | None = None  # drug whose grade >= 3 event this note must document
    resume: str | None = None  # drug restarted today after a serious event


@dataclass
class ComposedNote:
    title: str
    draft: NoteDraft
    serious: list[str] = field(default_factory=list)  # drugs with a documented grade >= 3 event
    extra_orders: list[tuple[str, str]] = field(default_factory=list)  # (drug, indication text)
    used_terms: set[str] = field(default_factory=set)
    positive_terms: list[str] = field(default_factory=list)  # events stated present, in note order


def sample_grade(rng: random.Random, term: CtcaeTerm) -> int | None:
    grade = rng.choices(_GRADES, weights=_GRADE_WEIGHTS)[0]
    return None if grade is None else min(grade, term.max_grade)


def plain(text: str) -> Sentence:
    return Sentence(Fragment(text))


def _drug_weights(drugs: Sequence[str]) -> list[int]:
    return [1 if DRUGS[d].role == "supportive" else 4 for d in drugs]


def adverse_event_sentences(
    rng: random.Random,
    ph: Phraser,
    ctx: NoteContext,
    note: ComposedNote,
    positives: int,
    negatives: int,
    *,
    allowed: Sequence[str] | None = None,
    avoid_symptoms: bool = False,
) -> list[Sentence]:
    """Positive and negated drug-event sentences for drugs ordered before this visit."""
    pool = [d for d in (allowed if allowed is not None else ctx.ordered_before) if DRUG_EVENTS[d]]
    if not pool:
        return []
    out: list[Sentence] = []

    def free_terms(drug: str) -> list[str]:
        return [
            x for x in DRUG_EVENTS[drug] if x not in note.used_terms and not (avoid_symptoms and x.lower() in SYMPTOMS)
        ]

    if ctx.forced_serious is not None:
        drug = ctx.forced_serious
        severe = [x for x in free_terms(drug) if ctx.ctcae[x].max_grade >= 3] or list(DRUG_EVENTS[drug])
        term = rng.choice(severe)
        severe_grade = 4 if ctx.ctcae[term].max_grade >= 4 and rng.random() < 0.25 else 3
        out.append(ph.ade(drug, term, severe_grade, max(ctx.visit.cycle - 1, 1)))
        note.used_terms.add(term)
        note.positive_terms.append(term)
        note.serious.append(drug)
    for _ in range(positives):
        drug = rng.choices(pool, weights=_drug_weights(pool))[0]
        terms = free_terms(drug)
        if not terms:
            continue
        term = rng.choice(terms)
        grade = sample_grade(rng, ctx.ctcae[term])
        note.used_terms.add(term)
        note.positive_terms.append(term)
        second = [x for x in free_terms(drug) if x != term]
        if second and rng.random() < 0.2:
            term2 = rng.choice(second)
            grade2 = sample_grade(rng, ctx.ctcae[term2])
            note.used_terms.add(term2)
            note.positive_terms.append(term2)
            out.append(ph.ade_pair(drug, (term, grade), (term2, grade2), max(ctx.visit.cycle - 1, 1)))
            grade = max(grade or 0, grade2 or 0)
        else:
            out.append(ph.ade(drug, term, grade, max(ctx.visit.cycle - 1, 1)))
        if grade is not None and grade >= 3 and drug not in note.serious:
            note.serious.append(drug)
            out[-1] = join_sentences(out[-1], ph.serious_stop(drug))
    for _ in range(negatives):
        drug = rng.choice(pool)
        terms = free_terms(drug)
        if not terms:
            continue
        term = rng.choice(terms)
        note.used_terms.add(term)
        others = [x for x in free_terms(drug) if x != term]
        if others and rng.random() < 0.25:
            term2 = rng.choice(others)
            note.used_terms.add(term2)
            out.append(ph.negated_pair(drug, term, term2))
        else:
            out.append(ph.negated(drug, term, max(ctx.visit.cycle - 1, 1)))
    return out


def treatment_sentences(rng: random.Random, ph: Phraser, ctx: NoteContext, note: ComposedNote) -> list[Sentence]:
    """'Continue ondansetron for nausea': drug and event together, no adverse drug event."""
    out: list[Sentence] = []
    ordered = ctx.ordered_before + ctx.given_today
    classes = {DRUGS[d].drug_class for d in ordered}
    for term in note.positive_terms:
        options = TREATS.get(term, ())
        known = [d for d in options if d in ordered]
        fresh = [d for d in options if d not in ordered and DRUGS[d].drug_class not in classes]
        if not (known or fresh) or rng.random() < 0.5:
            continue
        drug = rng.choice(known or fresh)
        if not known:
            note.extra_orders.append((drug, term.lower()))
            classes.add(DRUGS[drug].drug_class)
        out.append(ph.treats(drug, term))
    return out


def counsel_sentence(rng: random.Random, ph: Phraser, drugs: Sequence[str], note: ComposedNote) -> list[Sentence]:
    """A hypothetical side effect (a hard negative); never one of the 12 toxicity symptoms."""
    options = [(d, x) for d in drugs for x in DRUG_EVENTS[d] if x not in note.used_terms and x.lower() not in SYMPTOMS]
    if not options:
        return []
    drug, term = rng.choice(options)
    note.used_terms.add(term)
    return [ph.counsel(drug, term)]


def regimen_sentence(
    rng: random.Random, ph: Phraser, ctx: NoteContext, drugs: Sequence[str], label: str
) -> list[Sentence]:
    if not drugs:
        return []
    if len(drugs) == 1:
        return [ph.drug_only(drugs[0], starting=ctx.visit.kind == "consult")]
    name = ctx.plan.regimen.name
    acronym = name if name in ACRONYMS else None
    return [
        ph.combo(
            drugs,
            label,
            acronym=acronym,
            cycle=max(ctx.visit.cycle, 1),
            date=ctx.visit.day.isoformat(),
            days=ctx.plan.regimen.cycle_days,
        )
    ]


def distractors(ph: Phraser, count: int, kind: str = "general") -> list[Sentence]:
    return [ph.distractor(kind) for _ in range(count)]


def header(rng: random.Random, ph: Phraser, note: ComposedNote, ctx: NoteContext) -> None:
    ph.new_note()
    note.draft.line(note.title)
    label = rng.choice(("Date of service", "Visit date", "DOS", "Date"))
    note.draft.line(f"{label}: {ctx.visit.day.isoformat()}")


def compose_consult(rng: random.Random, ph: Phraser, ctx: NoteContext) -> ComposedNote:
    plan = ctx.plan
    note = ComposedNote(
        rng.choice(("Medical oncology consultation", "New patient oncology consult", "Oncology consult note")),
        NoteDraft(),
    )
    header(rng, ph, note, ctx)
    person = "woman" if plan.sex == "female" else "man"
    reason = [
        plain(
            f"{plan.age_on(ctx.visit.day)}-year-old {person} with "
            + (
                f"{plan.stage} {plan.cancer.label}, referred after progression on first-line therapy."
                if plan.prior
                else f"newly diagnosed {plan.stage} {plan.cancer.label}."
            )
        )
    ]
    if plan.cancer.her2 is not None:
        reason.append(plain(f"HER2 is {plan.cancer.her2} by immunohistochemistry."))
    note.draft.paragraph(rng.choice(("Reason for consultation: ", "Reason for referral: ", "HPI: ")), reason)

    history: list[Sentence] = distractors(ph, rng.randint(1, 2))
    if plan.comorbidities:
        history.append(plain("Past medical history includes " + " and ".join(c[0] for c in plan.comorbidities) + "."))
    if plan.prior is not None:
        history += regimen_sentence(rng, ph, ctx, plan.prior.drugs, "NEG")
        if rng.random() < 0.6:
            history += _prior_line_ade(rng, ph, ctx, note)
    rng.shuffle(history)
    note.draft.paragraph("History: ", history)
    allergies = ("Allergies: " + ", ".join(plan.allergies) + ".") if plan.allergies else "No known drug allergies."
    note.draft.paragraph(None, [plain(allergies)])

    plans = regimen_sentence(rng, ph, ctx, [d for d in plan.regimen.drugs if d in ctx.given_today], "COMB")
    radio = plan.radiotherapy
    if radio is not None:
        text = rng.choice(t.RT_PLAN).format(dose=f"{radio.dose_gy:g}", fx=radio.fractions, site=radio.site)
        plans.append(plain(text))
    plans += [
        ph.drug_only(d, starting=True) for d in plan.regimen.supportive if d in ctx.given_today and rng.random() < 0.6
    ]
    if rng.random() < 0.6:
        plans += counsel_sentence(rng, ph, [d for d in ctx.given_today if DRUGS[d].role != "supportive"], note)
    plans += distractors(ph, rng.randint(1, 2))
    note.draft.paragraph(rng.choice(("Assessment and plan: ", "Plan: ", "Recommendations: ")), plans)
    return note


def _prior_line_ade(rng: random.Random, ph: Phraser, ctx: NoteContext, note: ComposedNote) -> list[Sentence]:
    """A first-line toxicity from the outside record, grade 2 at most (grade 3 would forbid re-use)."""
    prior = ctx.plan.prior
    assert prior is not None
    drug = rng.choice([d for d in prior.drugs if DRUG_EVENTS[d]])
    term = rng.choice(DRUG_EVENTS[drug])
    note.used_terms.add(term)
    note.positive_terms.append(term)
    grade = rng.choice((None, 1, 2))
    return [ph.ade(drug, term, None if grade is None else min(grade, ctx.ctcae[term].max_grade), 2)]


def compose_progress(rng: random.Random, ph: Phraser, ctx: NoteContext) -> ComposedNote:
    plan, visit = ctx.plan, ctx.visit
    if visit.final:
        titles: tuple[str, ...] = ("Restaging visit", "Oncology progress note", "Medical oncology follow-up")
    else:
        titles = (
            f"Chemotherapy visit, cycle {visit.cycle}",
            "Oncology progress note",
            "Medical oncology follow-up",
        )
    note = ComposedNote(rng.choice(titles), NoteDraft())
    header(rng, ph, note, ctx)

    interval = adverse_event_sentences(rng, ph, ctx, note, rng.randint(1, 2), rng.choice((0, 1, 1, 2)))
    interval += distractors(ph, rng.randint(1, 3))
    if plan.prior is not None and rng.random() < 0.3:
        interval += regimen_sentence(rng, ph, ctx, plan.prior.drugs, "NEG")
    rng.shuffle(interval)
    note.draft.paragraph(rng.choice(("Interval history: ", "Subjective: ", "Since the last visit: ")), interval)
    note.draft.paragraph(rng.choice(("Exam: ", "Physical exam: ", "PE: ")), distractors(ph, rng.randint(1, 3), "exam"))

    plans: list[Sentence] = []
    if visit.final:
        given = [d for d in plan.regimen.drugs if d in ctx.ordered_before]
        plans += regimen_sentence(rng, ph, ctx, given, "POS" if rng.random() < 0.75 else "NEG")
    else:
        today = [d for d in plan.regimen.drugs if d in ctx.given_today and d not in note.serious]
        plans += regimen_sentence(rng, ph, ctx, today, "COMB")
    if ctx.resume is not None:
        plans.append(Sentence(sentence_case(render(rng.choice(t.RESUME), {"drug": ph.drug_surface(ctx.resume)}))))
    others = treatment_sentences(rng, ph, ctx, note)
    if rng.random() < 0.3:
        others += counsel_sentence(rng, ph, [d for d in ctx.given_today if DRUGS[d].role != "supportive"], note)
    others += distractors(ph, rng.randint(1, 2))
    rng.shuffle(others)
    note.draft.paragraph(rng.choice(("Assessment and plan: ", "Plan: ", "A/P: ")), plans + others)
    return note
