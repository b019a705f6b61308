"""The faithfulness guard: every event, number and grade a summary states must be in the grouped record,
and every serious event of the record must be stated as serious (named in the sentence that lists serious
events, or with its count of serious reports). Pure: text and record in, a report out.

Events are found by longest-first phrase matching against the record's terms plus a vocabulary of known
event names (CTCAE v5 terms and the training corpus' event texts); a known event absent from the record is a
hallucination. Numbers are read as claims inside the clause they belong to: the sentence head speaks for the
whole record, the text after a term mention (up to the next mention) speaks for that term. A claim is a
count ("3 reports", "2 patients", "1 serious"), a grade list ("grades 1, 2"), an onset ("8 days"), or a bare
number, which must equal one of the values its clause may mention.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from models.summariser.record import SERIOUS_GRADE, DrugGroup

_CLAIMS = (
    ("patients", re.compile(r"(\d+(?:\.\d+)?)\s+patients?\b")),
    ("reports", re.compile(r"(\d+(?:\.\d+)?)\s+(?:adverse event\s+)?reports?\b")),
    ("serious", re.compile(r"(\d+(?:\.\d+)?)\s+serious\b")),
    ("days", re.compile(r"(\d+(?:\.\d+)?)\s+days?\b")),
)
_GRADES = re.compile(r"\bgrades?\s+(\d+(?:\s*(?:,|and|or|-|to)\s*\d+)*)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# literal thresholds ("grade 3 or higher", "grade >= 3", "grade 3+") are wording, not claims
_LITERAL = re.compile(r"grades?\s*(?:>=|≥)\s*3|grades?\s+3\s*(?:\+|or higher|or above|and above)")
_TEMPLATE_WORDS = frozenset({"patient", "patients", "report", "reports", "serious", "grade", "grades", "days"})


@dataclass(frozen=True)
class GuardReport:
    stated_events: tuple[str, ...]
    hallucinated: tuple[str, ...]
    omitted_serious: tuple[str, ...]
    numbers_stated: int
    numeric_errors: tuple[str, ...] = field(default_factory=tuple)
    empty: bool = False

    @property
    def passed(self) -> bool:
        return not (self.hallucinated or self.omitted_serious or self.numeric_errors or self.empty)


@functools.lru_cache(maxsize=16)
def _cached_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    # the vocabulary is the same for every summary of a run: compile its ~1,600-way alternation once
    return _phrase_pattern(phrases)


def _phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted({p for p in phrases if p and p not in _TEMPLATE_WORDS}, key=lambda p: (-len(p), p))
    if not ordered:
        return None
    return re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(p) for p in ordered) + r")(?![a-z0-9])")


def _mask(text: str, drug: str) -> str:
    """Blank the drug name out of a clause: digits in a name ("5-fu") are not claims."""
    return text.replace(drug, " " * len(drug)) if drug else text


def _num(text: str) -> float:
    return float(text)


def _sentences(text: str) -> list[str]:
    # a full stop ends a sentence unless it sits between digits (1.5 days)
    return [s for s in re.split(r"(?<!\d)\.(?!\d)|\.(?=\s)|\n+", text) if s.strip()]


class _Expect:
    """What one clause may claim: either the whole record (term None) or one term."""

    def __init__(self, group: DrugGroup, term: str | None) -> None:
        median = group.median_days_to_onset
        self.days = {median} if median is not None else set()
        if term is None:
            self.values = {
                "patients": {float(group.patients)},
                "reports": {float(group.reports)},
                "serious": {float(group.serious_events)},
            }
            self.grades = {g for t in group.terms for g in t.grades}
        else:
            t = next(x for x in group.terms if x.term.lower() == term)
            self.values = {
                "patients": {float(t.patients)},
                "reports": {float(t.reports)},
                "serious": {float(t.serious)},
            }
            self.grades = set(t.grades)
        self.bare = {v for vs in self.values.values() for v in vs} | self.days | {float(g) for g in self.grades}


def _check_clause(clause: str, expect: _Expect, label: str, in_serious: bool, errors: list[str]) -> int:
    stated = 0
    clause = _LITERAL.sub(" ", clause)
    taken: list[tuple[int, int]] = []
    for kind, pattern in _CLAIMS:
        for m in pattern.finditer(clause):
            stated += 1
            taken.append(m.span())
            value = _num(m.group(1))
            allowed = expect.days if kind == "days" else expect.values[kind]
            if value not in allowed:
                errors.append(f"{label}: {m.group(0)!r}")
    for m in _GRADES.finditer(clause):
        taken.append(m.span())
        for g in _NUMBER.findall(m.group(1)):
            stated += 1
            grade = int(float(g))
            if grade not in expect.grades or (in_serious and grade < SERIOUS_GRADE):
                errors.append(f"{label}: grade {grade}")
    rest = list(clause)
    for start, end in taken:
        rest[start:end] = " " * (end - start)
    for m in _NUMBER.finditer("".join(rest)):
        stated += 1
        if _num(m.group(0)) not in expect.bare:
            errors.append(f"{label}: {m.group(0)}")
    return stated


def check_summary(text: str, group: DrugGroup, vocabulary: Collection[str] = ()) -> GuardReport:
    """Hold ``text`` to ``group``; ``vocabulary`` names events the model might invent (lower-cased here)."""
    lowered = text.lower()
    record_terms = {t.term.lower(): t for t in group.terms}
    known = tuple(sorted({v.lower() for v in vocabulary}))
    known_set = set(known)
    if all(t in known_set for t in record_terms):
        pattern = _cached_pattern(known)
    else:
        pattern = _cached_pattern(tuple(sorted(known_set | set(record_terms))))
    stated: list[str] = []
    declared_serious: set[str] = set()
    errors: list[str] = []
    numbers = 0
    drug = group.drug.lower()
    for sentence in _sentences(lowered):
        in_serious = sentence.strip().startswith("serious")
        mentions = list(pattern.finditer(sentence)) if pattern else []
        head_end = mentions[0].start() if mentions else len(sentence)
        numbers += _check_clause(_mask(sentence[:head_end], drug), _Expect(group, None), "record", False, errors)
        for i, m in enumerate(mentions):
            term = m.group(1)
            stated.append(term)
            end = mentions[i + 1].start() if i + 1 < len(mentions) else len(sentence)
            if term not in record_terms:
                continue
            clause = _mask(sentence[m.end() : end], drug)
            if in_serious or re.search(r"\d\s+serious", clause):
                declared_serious.add(term)
                if record_terms[term].serious == 0:
                    errors.append(f"{term}: called serious, has no grade >= {SERIOUS_GRADE} report")
            numbers += _check_clause(clause, _Expect(group, term), term, in_serious, errors)
    seen = set(stated)
    return GuardReport(
        stated_events=tuple(dict.fromkeys(stated)),
        hallucinated=tuple(sorted(t for t in seen if t not in record_terms)),
        omitted_serious=tuple(sorted(t.term for t in group.serious_terms if t.term.lower() not in declared_serious)),
        numbers_stated=numbers,
        numeric_errors=tuple(errors),
        empty=not text.strip(),
    )
