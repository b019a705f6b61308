"""Who each synthetic patient is and when they are seen: demographics, cancer, regimen, visit calendar."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from cds.cohort.codes import ALLERGIES, CANCERS, COMORBIDITIES, OVERPRESCRIPTION_REASONS, Cancer, Regimen

ANCHOR = date(2025, 3, 3)  # first possible consultation; fixed so output never depends on the clock

GIVEN = {
    "female": (
        "Avery",
        "Brooke",
        "Celia",
        "Dana",
        "Elise",
        "Farah",
        "Greta",
        "Hana",
        "Iris",
        "Joan",
        "Kira",
        "Lena",
    ),
    "male": (
        "Aaron",
        "Boris",
        "Caleb",
        "Dario",
        "Emil",
        "Felix",
        "Gideon",
        "Hugo",
        "Ivan",
        "Jonas",
        "Kurt",
        "Leon",
    ),
}
FAMILY = (
    "Synthfield",
    "Mocksley",
    "Testbrook",
    "Fauxton",
    "Demoray",
    "Samplewood",
    "Pseudonym",
    "Cohortley",
    "Simwell",
    "Dummond",
    "Placeholm",
    "Trialson",
)
STAGES = ("Stage II", "Stage III", "Stage IIIB", "Stage IV")


@dataclass(frozen=True)
class VisitPlan:
    number: int  # 1-based encounter sequence within the patient
    kind: str  # consult | progress | radiotherapy
    day: date
    cycle: int  # chemotherapy cycle ordered at this visit (0 = none)
    rt_week: int  # radiotherapy week (0 unless kind == radiotherapy)
    final: bool  # restaging visit at the end of the course


@dataclass(frozen=True)
class RadiotherapyPlan:
    site: str
    dose_gy: float
    fractions: int
    start: date
    end: date


@dataclass(frozen=True)
class PatientPlan:
    index: int
    patient_id: str
    sex: str
    given: str
    family: str
    birth: date
    cancer: Cancer
    regimen: Regimen
    prior: Regimen | None
    stage: str
    comorbidities: tuple[tuple[str, str, str, str], ...]
    allergies: tuple[str, ...]
    overprescription: str | None
    start: date
    visits: tuple[VisitPlan, ...]
    radiotherapy: RadiotherapyPlan | None

    def age_on(self, day: date) -> int:
        return day.year - self.birth.year - ((day.month, day.day) < (self.birth.month, self.birth.day))


def cancer_order(seed: int) -> list[Cancer]:
    """Cancers shuffled once per seed; patient i gets entry i mod 8, so 8 patients cover every type.

    Radiotherapy cancers sit at positions 2, 5 and 7, so any cohort of two or more patients has
    radiotherapy notes (the toxicity truth needs them).
    """
    rng = random.Random(f"{seed}:cancers")
    radio = [c for c in CANCERS if c.radiotherapy is not None]
    other = [c for c in CANCERS if c.radiotherapy is None]
    rng.shuffle(radio)
    rng.shuffle(other)
    slots = (1, 4, 6)
    return [radio.pop(0) if i in slots else other.pop(0) for i in range(len(CANCERS))]


def overprescription_for(index: int) -> str | None:
    """Every third patient (from the second) gets one deliberate overprescription, reasons in turn."""
    if index % 3 != 2:
        return None
    return OVERPRESCRIPTION_REASONS[(index // 3) % len(OVERPRESCRIPTION_REASONS)]


def make_plan(rng: random.Random, index: int, cancer: Cancer) -> PatientPlan:
    sex = rng.choice(cancer.sexes)
    start = ANCHOR + timedelta(days=rng.randint(0, 240))
    age = rng.randint(38, 84)
    birth = start - timedelta(days=age * 365 + rng.randint(0, 364))
    regimen = rng.choice(cancer.regimens)
    prior = rng.choice(cancer.prior_lines) if regimen.second_line else None
    comorbidities = tuple(c for c in COMORBIDITIES if rng.random() < 0.3)
    allergies = tuple(a for a in ALLERGIES if rng.random() < 0.12)
    stage = "Stage IV" if regimen.second_line else rng.choice(STAGES)
    radio = _radiotherapy(rng, cancer, start)
    return PatientPlan(
        index=index,
        patient_id=f"ov-pat-{index:04d}",
        sex=sex,
        given=rng.choice(GIVEN[sex]),
        family=rng.choice(FAMILY),
        birth=birth,
        cancer=cancer,
        regimen=regimen,
        prior=prior,
        stage=stage,
        comorbidities=comorbidities,
        allergies=allergies,
        overprescription=overprescription_for(index),
        start=start,
        visits=_calendar(rng, regimen, start, radio),
        radiotherapy=radio,
    )


def _radiotherapy(rng: random.Random, cancer: Cancer, start: date) -> RadiotherapyPlan | None:
    if cancer.radiotherapy is None:
        return None
    if cancer.key == "prostate":
        dose, fractions = rng.choice(((78.0, 39), (70.0, 28), (60.0, 20)))
        begin = start + timedelta(days=7 * rng.randint(2, 8))
    elif cancer.radiotherapy == "pelvis":
        dose, fractions = 50.4, 28
        begin = start + timedelta(days=7)
    else:
        dose, fractions = 70.0, 35
        begin = start + timedelta(days=7)
    weeks = -(-fractions // 5)
    return RadiotherapyPlan(cancer.radiotherapy, dose, fractions, begin, begin + timedelta(days=7 * weeks - 3))


def _calendar(
    rng: random.Random, regimen: Regimen, start: date, radio: RadiotherapyPlan | None
) -> tuple[VisitPlan, ...]:
    """Consult, one visit per cycle, a restaging visit, and weekly radiotherapy checks in between.

    Cycle visits fall on multiples of 7 days after the consult and radiotherapy checks on day 2 of
    a treatment week, so no two visits share a day.
    """
    interval = regimen.cycle_days if regimen.cycle_days >= 14 else 21
    cycles = rng.randint(3, 5)
    slots: list[tuple[date, str, int, int, bool]] = [(start, "consult", 1, 0, False)]
    for k in range(2, cycles + 1):
        slots.append((start + timedelta(days=interval * (k - 1)), "progress", k, 0, False))
    slots.append((start + timedelta(days=interval * cycles), "progress", 0, 0, True))
    if radio is not None:
        weeks = (radio.end - radio.start).days // 7 + 1
        chosen = sorted(rng.sample(range(1, weeks + 1), k=min(weeks, rng.randint(3, 4))))
        for week in chosen:
            slots.append((radio.start + timedelta(days=7 * (week - 1) + 2), "radiotherapy", 0, week, False))
    slots.sort(key=lambda s: s[0])
    return tuple(
        VisitPlan(i + 1, kind, day, cycle, week, final) for i, (day, kind, cycle, week, final) in enumerate(slots)
    )
