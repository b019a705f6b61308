"""Fact-copy constrained decoding: the record's facts are copied into the paragraph, never re-derived.

A 135 M decoder orders and phrases the paragraph well but, left free, drops the third or fourth serious
event of a long list and re-counts grades (7 % of serious events omitted, 4 % of numeric claims wrong on the
dev split). Those facts are in the record already, in the very words the paragraph uses, so decoding copies
them at four points and leaves the rest to the model:

1. the paragraph opens with the record's drug name (left free, the model shortened "mequitazine" to "meq");
2. once the opening sentence ends on its serious count (``... 3 serious.``) or the model opens the serious
   sentence itself (``Serious:``), the whole serious sentence is copied from the record;
3. in the "Most reported" sentence, once what the model has written of a term is the start of exactly one
   record term, the rest of that term is copied (the model chose it; its spelling comes from the record);
4. whenever the model writes a record term followed by an opening bracket (``Nausea (``), the bracket's
   content is copied from the record (``3 reports, grades 1, 2``) and the model's next token must close
   it; the model picks that token (``);`` or ``).`` is one token: a copied ``)`` alone made it stop, and
   left open it appended grades of its own).

The model still writes the counts, chooses which terms to report and in which order, and the onset; the
guard still checks everything afterwards. The rules fire on the paragraph's own structure: a model that
never ends its opening sentence gets nothing copied (and the guard rejects it). Pure text in, text out: the
generator turns the continuation into tokens and feeds them as if the model had chosen them, then holds the
next token to ``then`` when set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.summariser.narrative import reported_detail, serious_sentence
from models.summariser.record import DrugGroup

_COUNTS_END = re.compile(r"\b\d+ serious\.$")
_SERIOUS_OPENED = re.compile(r"serious:", re.IGNORECASE)
_TERM_BRACKET = re.compile(r"(?:^|[.:;]\s*)([^.:;()]+?)\s*\($")
_REPORTED = "most reported:"


@dataclass(frozen=True)
class Continuation:
    """Text to write as if the model had chosen it; ``then``: what the model's next token must start with."""

    text: str
    then: str | None = None


@dataclass(frozen=True)
class CopyPlan:
    """What decoding may copy for one record: its drug, serious sentence and each term's bracket content."""

    drug: str
    serious: str | None  # "Serious: A (1 serious, grade 3); B (...)." or None without serious events
    details: dict[str, str]  # lower-cased term -> "3 reports, grades 1, 2" (the model closes the bracket)
    terms: tuple[str, ...] = ()  # the record's terms as written in it


def copy_plan(group: DrugGroup) -> CopyPlan:
    return CopyPlan(
        drug=group.drug,
        serious=serious_sentence(group),
        details={t.term.lower(): reported_detail(t) for t in group.terms},
        terms=tuple(t.term for t in group.terms),
    )


def _term_completion(plan: CopyPlan, text: str) -> Continuation | None:
    """The rest of the one record term that the "Most reported" clause being written can only be."""
    lowered = text.lower()
    opened = lowered.rfind(_REPORTED)
    if opened < 0:
        return None
    cut = max(lowered.rfind("; "), opened + len(_REPORTED))
    written = text[cut:].lstrip(";: ").lstrip()
    if len(written) < 2 or any(c in written for c in "().;"):
        return None
    matches = [t for t in plan.terms if t.lower().startswith(written.lower())]
    if len(matches) != 1 or len(matches[0]) == len(written):
        return None
    term = matches[0]
    return Continuation(term[len(written) :] + " (" + plan.details[term.lower()], then=")")


def forced_continuation(plan: CopyPlan, text: str) -> Continuation | None:
    """What decoding must write next after ``text`` (the paragraph so far), or None to let the model."""
    stripped = text.rstrip()
    if not stripped:
        return Continuation(plan.drug + ":")
    if plan.serious is not None:
        opened = list(_SERIOUS_OPENED.finditer(stripped))
        if not opened and _COUNTS_END.search(stripped):
            return Continuation(" " + plan.serious)
        if len(opened) == 1 and stripped.lower().endswith("serious:"):
            return Continuation(plan.serious.removeprefix("Serious:"))  # the model opened it itself
    completion = _term_completion(plan, text)
    if completion is not None:
        return completion
    if not text.endswith("("):
        return None
    match = _TERM_BRACKET.search(text)
    detail = plan.details.get(match.group(1).strip().lower()) if match else None
    return Continuation(detail, then=")") if detail else None
