"""Prompt rendering and the deterministic narrative: the reference every generated summary is held to.

The narrative is short on purpose: a 135 M decoder writes ~60 tokens per drug, so 100 drug groups fit in a
minute on a CPU. The full table (every term, count, grade, evidence span) stays deterministic in the
published document; the model only writes the readable paragraph on top of it.
"""

from __future__ import annotations

from collections.abc import Collection

from models.summariser.record import SERIOUS_GRADE, DrugGroup, TermCount

PROMPT_VERSION = "summary-prompt.v2"  # v2: the serious sentence comes before "Most reported"
MOST_REPORTED = 3  # terms named in the "Most reported" sentence
PROMPT_TERMS = 6  # non-serious terms shown to the model (serious ones are always shown)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _grades(values: Collection[int]) -> str:
    ordered = sorted(values)
    return ("grade " if len(ordered) == 1 else "grades ") + ", ".join(str(g) for g in ordered)


def _days(value: float) -> str:
    return f"{value:g}"


def prompt_terms(group: DrugGroup) -> list[TermCount]:
    """The terms the model sees: the most reported ones plus every serious one, most reported first."""
    ranked = sorted(group.terms, key=lambda t: (-t.reports, t.term))
    return [t for i, t in enumerate(ranked) if i < PROMPT_TERMS or t.serious > 0]


def render_prompt(group: DrugGroup) -> str:
    """The record as compact text; the model's whole input (no note text, no patient identifiers)."""
    median = "unknown" if group.median_days_to_onset is None else _days(group.median_days_to_onset)
    lines = [
        f"ADE record of {group.drug}",
        f"patients: {group.patients}; reports: {group.reports}; serious: {group.serious_events}; "
        f"median onset days: {median}",
        "events:",
    ]
    for t in prompt_terms(group):
        grades = " ".join(f"{g}:{n}" for g, n in sorted(t.grades.items())) or "none"
        lines.append(f"{t.term} | reports {t.reports} | grades {grades} | serious {t.serious}")
    lines.append("summary:")
    return "\n".join(lines) + "\n"


def narrate(group: DrugGroup, skip_serious: Collection[str] = ()) -> str:
    """The reference narrative; ``skip_serious`` leaves serious terms out (used only to build rejected pairs)."""
    ranked = sorted(group.terms, key=lambda t: (-t.reports, t.term))
    parts = [
        f"{group.drug}: {_n(group.patients, 'patient')}, {_n(group.reports, 'report')}, {group.serious_events} serious."
    ]
    # Serious events right after the counts: they are what a pharmacist acts on, and a generation cut at
    # its token cap loses the end of a paragraph, never this sentence.
    serious = [t for t in ranked if t.serious > 0 and t.term not in skip_serious]
    if serious:
        clauses = []
        for t in serious:
            high = [g for g in t.grades if g >= SERIOUS_GRADE]
            clauses.append(f"{t.term} ({t.serious} serious" + (f", {_grades(high)}" if high else "") + ")")
        parts.append("Serious: " + "; ".join(clauses) + ".")
    elif not group.serious_terms:
        parts.append("No serious events.")
    top = []
    for t in ranked[:MOST_REPORTED]:
        detail = _n(t.reports, "report")
        if t.grades:
            detail += ", " + _grades(t.grades)
        top.append(f"{t.term} ({detail})")
    if top:
        parts.append("Most reported: " + "; ".join(top) + ".")
    if group.median_days_to_onset is not None:
        parts.append(f"Median onset {_days(group.median_days_to_onset)} days after first dose.")
    return " ".join(parts)
