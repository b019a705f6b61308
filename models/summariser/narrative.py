"""Prompt rendering and the deterministic narrative: the reference every generated summary is held to.

The narrative is short on purpose: a 135 M decoder writes ~60 tokens per drug, so 100 drug groups fit in a
minute on a CPU. The full table (every term, count, grade, evidence span) stays deterministic in the
published document; the model only writes the readable paragraph on top of it.
"""

from __future__ import annotations

from collections.abc import Collection

from models.summariser.record import SERIOUS_GRADE, DrugGroup, TermCount

PROMPT_VERSION = "summary-prompt.v2"  # v2: facts in the paragraph's phrases, serious events first
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


def reported_detail(term: TermCount) -> str:
    """``3 reports, grades 1, 2``: what the "Most reported" sentence says of a term, inside its brackets."""
    detail = _n(term.reports, "report")
    if term.grades:
        detail += ", " + _grades(term.grades)
    return detail


def reported_clause(term: TermCount) -> str:
    """``Nausea (3 reports, grades 1, 2)``: one term of the "Most reported" sentence."""
    return f"{term.term} ({reported_detail(term)})"


def serious_clause(term: TermCount) -> str:
    """``Vomiting (1 serious, grade 3)``: one term of the "Serious" sentence."""
    high = [g for g in term.grades if g >= SERIOUS_GRADE]
    return f"{term.term} ({term.serious} serious" + (f", {_grades(high)}" if high else "") + ")"


def serious_sentence(group: DrugGroup, skip_serious: Collection[str] = ()) -> str | None:
    """``Serious: Vomiting (1 serious, grade 3); ...``, most reported first; None without serious events."""
    ranked = sorted(group.terms, key=lambda t: (-t.reports, t.term))
    serious = [serious_clause(t) for t in ranked if t.serious > 0 and t.term not in skip_serious]
    return "Serious: " + "; ".join(serious) + "." if serious else None


def render_prompt(group: DrugGroup) -> str:
    """The record as compact text; the model's whole input (no note text, no patient identifiers).

    v2 states every fact in the phrase the paragraph uses, serious events in a section of their own: a 135 M
    decoder then selects and orders (which it learns) instead of filtering the event list by a column and
    re-counting grades (which it did not: v1 left 38 % of serious events out after 500 SFT steps).
    """
    median = "unknown" if group.median_days_to_onset is None else _days(group.median_days_to_onset)
    ranked = sorted(group.terms, key=lambda t: (-t.reports, t.term))
    serious = [serious_clause(t) for t in ranked if t.serious > 0]
    lines = [
        f"ADE record of {group.drug}",
        f"patients: {group.patients}; reports: {group.reports}; serious: {group.serious_events}; "
        f"median onset days: {median}",
        "serious events:",
        *(f"- {clause}" for clause in serious or ["none"]),
        "events, most reported first:",
        *(f"- {reported_clause(t)}" for t in prompt_terms(group)),
        "summary:",
    ]
    return "\n".join(lines) + "\n"


def narrate(group: DrugGroup, skip_serious: Collection[str] = ()) -> str:
    """The reference narrative; ``skip_serious`` leaves serious terms out (used only to build rejected pairs)."""
    ranked = sorted(group.terms, key=lambda t: (-t.reports, t.term))
    parts = [
        f"{group.drug}: {_n(group.patients, 'patient')}, {_n(group.reports, 'report')}, {group.serious_events} serious."
    ]
    # Serious events right after the counts: they are what a pharmacist acts on, and a generation cut at
    # its token cap loses the end of a paragraph, never this sentence.
    serious = serious_sentence(group, skip_serious)
    if serious:
        parts.append(serious)
    elif not group.serious_terms:
        parts.append("No serious events.")
    top = [reported_clause(t) for t in ranked[:MOST_REPORTED]]
    if top:
        parts.append("Most reported: " + "; ".join(top) + ".")
    if group.median_days_to_onset is not None:
        parts.append(f"Median onset {_days(group.median_days_to_onset)} days after first dose.")
    return " ".join(parts)
