"""Weekly radiotherapy on-treatment notes: the 12 pelvic toxicity symptoms, present, denied or unmentioned."""

from __future__ import annotations

import random

from cds.cohort import templates as t
from cds.cohort.lexicon import SYMPTOM_ABSENT, SYMPTOM_PRESENT, SYMPTOM_TERMS, SYMPTOMS
from cds.cohort.notes import (
    ComposedNote,
    NoteContext,
    adverse_event_sentences,
    distractors,
    header,
    plain,
)
from cds.cohort.sentences import Phraser
from cds.cohort.text import NoteDraft, Sentence

# Chance that a symptom is present in a given week of pelvic radiotherapy (before the weekly ramp).
_BASE = {
    "urinary urgency": 0.45,
    "urinary frequency": 0.55,
    "cystitis noninfective": 0.15,
    "hematuria": 0.12,
    "urinary incontinence": 0.15,
    "urinary retention": 0.12,
    "urinary tract pain": 0.3,
    "proctitis": 0.25,
    "diarrhea": 0.4,
    "rectal hemorrhage": 0.12,
    "fatigue": 0.5,
    "erectile dysfunction": 0.3,
}
_SYSTEMS = (
    (
        "GU: ",
        (
            "urinary urgency",
            "urinary frequency",
            "cystitis noninfective",
            "hematuria",
            "urinary incontinence",
            "urinary retention",
            "urinary tract pain",
        ),
    ),
    ("GI: ", ("proctitis", "diarrhea", "rectal hemorrhage")),
    ("Constitutional: ", ("fatigue",)),
    ("Sexual function: ", ("erectile dysfunction",)),
)
_TREATED_BY = {"urinary frequency": "tamsulosin", "urinary urgency": "tamsulosin", "diarrhea": "loperamide"}


def applicable_symptoms(ctx: NoteContext) -> tuple[str, ...]:
    if ctx.plan.radiotherapy is None or ctx.plan.radiotherapy.site != "pelvis":
        return ("fatigue",)
    if ctx.plan.sex == "female":
        return tuple(s for s in SYMPTOMS if s != "erectile dysfunction")
    return SYMPTOMS


def _grade(rng: random.Random, ctx: NoteContext, symptom: str, week: int) -> int | None:
    if rng.random() < 0.12:
        return None
    if week <= 2:
        grade = 1
    elif week <= 4:
        grade = rng.choice((1, 2, 2))
    else:
        grade = rng.choice((1, 2, 2, 3))
    return min(grade, ctx.ctcae[SYMPTOM_TERMS[symptom]].max_grade)


def _status(rng: random.Random, ctx: NoteContext, symptom: str, week: int) -> str:
    base = _BASE[symptom]
    if ctx.plan.cancer.key == "rectal":
        base = base * (1.4 if symptom in ("proctitis", "diarrhea", "rectal hemorrhage") else 0.6)
    if rng.random() < min(0.95, base * min(1.0, 0.4 + 0.2 * week)):
        return "present"
    return "absent" if rng.random() < 0.6 else "not_mentioned"


def compose_radiotherapy(rng: random.Random, ph: Phraser, ctx: NoteContext) -> ComposedNote:
    radio = ctx.plan.radiotherapy
    assert radio is not None
    week = ctx.visit.rt_week
    note = ComposedNote(
        rng.choice(
            (
                "Radiation oncology weekly on-treatment visit",
                f"On-treatment visit, week {week}",
                "Radiation oncology OTV note",
            )
        ),
        NoteDraft(),
    )
    header(rng, ph, note, ctx)
    done = max(1, min(radio.fractions, 5 * week - rng.randint(0, 2)))
    note.draft.paragraph(
        "Treatment: ",
        [plain(f"Completed {done} of {radio.fractions} fractions to the {radio.site} ({radio.dose_gy:g} Gy planned).")],
    )

    ordered = set(ctx.ordered_before) | set(ctx.given_today)
    present: dict[str, list[Sentence]] = {}
    absent: dict[str, list[tuple[str, str]]] = {}
    for symptom in applicable_symptoms(ctx):
        status = _status(rng, ctx, symptom, week)
        note.used_terms.add(SYMPTOM_TERMS[symptom])
        if status == "present":
            treat = _TREATED_BY.get(symptom)
            if treat is not None and (treat in ordered or rng.random() >= 0.3):
                treat = None
            if treat is not None:
                ordered.add(treat)
                note.extra_orders.append((treat, symptom))
            surface = rng.choice(SYMPTOM_PRESENT[symptom])
            sentence = ph.symptom_present(symptom, surface, _grade(rng, ctx, symptom, week), treat)
            present.setdefault(symptom, []).append(sentence)
        elif status == "absent":
            absent.setdefault(symptom, []).append((symptom, rng.choice(SYMPTOM_ABSENT[symptom])))

    structured = rng.random() < 0.5
    prose: list[Sentence] = []
    for label, members in _SYSTEMS:
        sentences = [s for m in members for s in present.get(m, [])]
        denied = [pair for m in members for pair in absent.get(m, [])]
        rng.shuffle(denied)
        while denied:
            size = rng.randint(1, 4)
            sentences.append(ph.symptoms_absent(denied[:size]))
            denied = denied[size:]
        if structured:
            note.draft.paragraph(label, sentences)
        else:
            prose += sentences
    if not structured:
        rng.shuffle(prose)
        note.draft.paragraph(rng.choice(("Symptom review: ", "Toxicity assessment: ", "Subjective: ")), prose)

    extra: list[Sentence] = []
    if radio.site == "head and neck":
        extra += [plain(rng.choice(t.HEAD_NECK_RT).format(g=rng.randint(1, 2))) for _ in range(rng.randint(1, 2))]
    chemo = [d for d in ctx.ordered_before if d in ctx.plan.regimen.drugs]
    if chemo and rng.random() < 0.4:
        extra += adverse_event_sentences(rng, ph, ctx, note, 1, rng.choice((0, 1)), allowed=chemo, avoid_symptoms=True)
    extra += distractors(ph, rng.randint(1, 3), "radiotherapy")
    rng.shuffle(extra)
    note.draft.paragraph(rng.choice(("Assessment: ", "Plan: ", "Impression and plan: ")), extra)
    return note
