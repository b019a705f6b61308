"""The cohort generator's entry point: same ``(patients, seed)`` -> the same cohort, byte for byte."""

from __future__ import annotations

import random
from typing import Any

from cds.cohort.course import PatientCourse
from cds.cohort.ctcae import load_ctcae_terms
from cds.cohort.plan import cancer_order, make_plan
from cds.cohort.records import Cohort, NoteTruth, OverprescriptionTruth, VisitTruth
from cds.errors import CohortError

MAX_PATIENTS = 9999  # ids are ov-pat-0001 .. ov-pat-9999

# Referenced types first, so a loader that keeps this order never writes a dangling reference.
TYPE_ORDER = (
    "Patient",
    "Condition",
    "Observation",
    "AllergyIntolerance",
    "Encounter",
    "MedicationRequest",
    "Procedure",
    "DocumentReference",
)


def generate_cohort(patients: int, seed: int) -> Cohort:
    """Generate ``patients`` synthetic oncology patients; patient i depends only on (seed, i)."""
    if not 1 <= patients <= MAX_PATIENTS:
        raise CohortError("OV-0041", f"--patients must be between 1 and {MAX_PATIENTS}, got {patients}")
    ctcae = load_ctcae_terms()
    order = cancer_order(seed)
    resources: list[dict[str, Any]] = []
    notes: list[NoteTruth] = []
    over: list[OverprescriptionTruth] = []
    visits: list[VisitTruth] = []
    for index in range(1, patients + 1):
        rng = random.Random(f"{seed}:patient:{index}")
        plan = make_plan(rng, index, order[(index - 1) % len(order)])
        out = PatientCourse(plan, rng, ctcae).build()
        resources += out.resources
        notes += out.notes
        over += out.overprescriptions
        visits += out.visits
    rank = {kind: i for i, kind in enumerate(TYPE_ORDER)}
    resources.sort(key=lambda r: rank[str(r["resourceType"])])  # stable: patient order kept within a type
    return Cohort(seed, patients, tuple(resources), tuple(notes), tuple(over), tuple(visits))
