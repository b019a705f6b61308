"""Preference pairs for DPO: chosen is the faithful narrative, rejected breaks it in one known way.

Each rejected text is the narrative of a minimally perturbed record, so it reads exactly like a good
summary and differs only in the fault: an invented event, a dropped serious event, a wrong count, a wrong
grade. Pure and seeded.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from models.summariser.guard import check_summary
from models.summariser.narrative import MOST_REPORTED, narrate
from models.summariser.record import DrugGroup, TermCount

FAULTS = ("invented_event", "dropped_serious", "wrong_count", "wrong_grade")


@dataclass(frozen=True)
class PreferencePair:
    group: DrugGroup
    chosen: str
    rejected: str
    fault: str


def _with_term(group: DrugGroup, index: int, term: TermCount) -> DrugGroup:
    terms = list(group.terms)
    terms[index] = term
    return replace(group, terms=tuple(terms))


def _ranked(group: DrugGroup) -> list[int]:
    return sorted(range(len(group.terms)), key=lambda i: (-group.terms[i].reports, group.terms[i].term))


def rejected_text(group: DrugGroup, fault: str, vocabulary: Sequence[str], rng: random.Random) -> str | None:
    """The narrative with ``fault``; None when the record cannot show it (no serious event to drop, ...)."""
    shown = _ranked(group)[:MOST_REPORTED]
    if fault == "invented_event":
        known = {t.term.lower() for t in group.terms}
        candidates = [v for v in vocabulary if v.lower() not in known and group.drug.lower() not in v.lower()]
        if not candidates or not group.terms:
            return None
        top = group.terms[shown[0]]
        fake = TermCount(rng.choice(candidates), top.reports, top.patients, dict(top.grades), top.serious)
        return narrate(replace(group, terms=(fake, *group.terms)))
    if fault == "dropped_serious":
        serious = group.serious_terms
        if not serious:
            return None
        return narrate(group, skip_serious={rng.choice(serious).term})
    if fault == "wrong_count":
        if rng.random() < 0.3 or not shown:
            return narrate(replace(group, patients=group.patients + rng.randint(1, 3)))
        i = rng.choice(shown)
        t = group.terms[i]
        return narrate(
            _with_term(
                group,
                i,
                replace(
                    t, reports=t.reports + rng.choice((-1, 1, 2)) if t.reports > 1 else t.reports + rng.randint(1, 3)
                ),
            )
        )
    if fault == "wrong_grade":
        graded = [i for i in shown if group.terms[i].grades] + [i for i, t in enumerate(group.terms) if t.serious]
        if not graded:
            return None
        i = rng.choice(graded)
        t = group.terms[i]
        old = rng.choice(sorted(t.grades))
        free = [g for g in range(1, 6) if g not in t.grades and (g >= 3) == (old >= 3)] or [
            g for g in range(1, 6) if g not in t.grades
        ]
        grades = dict(t.grades)
        grades[rng.choice(free)] = grades.pop(old)
        return narrate(_with_term(group, i, replace(t, grades=dict(sorted(grades.items())))))
    raise ValueError(f"unknown fault {fault!r}")


def preference_pairs(
    groups: Sequence[DrugGroup], vocabulary: Sequence[str], per_group: int = 2, seed: int = 13
) -> list[PreferencePair]:
    """Up to ``per_group`` pairs per record, faults drawn in turn so each kind is well represented."""
    rng = random.Random(seed)
    pairs: list[PreferencePair] = []
    for n, group in enumerate(groups):
        chosen = narrate(group)
        faults = list(FAULTS)
        rng.shuffle(faults)
        if group.serious_terms and n % 2 == 0:  # serious omissions are the costliest fault: see them often
            faults.remove("dropped_serious")
            faults.insert(0, "dropped_serious")
        made = 0
        for fault in faults:
            text = rejected_text(group, fault, vocabulary, rng)
            # a perturbation can land on another faithful summary (a count change re-ranks the terms): not a pair
            if text is None or text == chosen or check_summary(text, group, vocabulary).passed:
                continue
            pairs.append(PreferencePair(group, chosen, text, fault))
            made += 1
            if made >= per_group:
                break
    return pairs
