"""Cue rules for what the text says about an adverse event: negated or not, and how severe.

Negation (NegEx-style, Chapman et al. 2001, reduced to what notes and case reports use):
- a *pre* trigger before the event in the same clause: ``denies``, ``no``, ``without``, ``negative for``,
  ``no evidence of``, ``free of``, ``absence of``, ``has not had``, ``did not develop``, ``not caused``, ...;
  the scope runs from the trigger to the event unless a terminator comes between (``but``, ``however``,
  ``although``, ``except``, ``aside from``, ``;``, ``:``) or more than ``MAX_SCOPE_WORDS`` words do;
  lists stay in scope ("denies nausea or vomiting" negates both);
- a *post* trigger after the event: ``, which he/she denies`` later in the clause, or right after
  it ``was/were denied``, ``absent``, ``ruled out``, ``not seen/observed/reported``.
Severity:
- an explicit grade next to the event: ``grade 3 X``, ``G3 X``, ``gr 3 X``, ``CTCAE grade 3 X``,
  ``X (grade 3)``, ``X, CTCAE grade 3``, ``X grade 3``, ``X (CTCAE v5 G3)``; Roman numerals I-V too;
- otherwise a severity word right before or after it: mild -> 1, moderate -> 2, severe -> 3,
  life-threatening -> 4, fatal -> 5 (the CTCAE grade scale's own adjectives);
- a grade phrase immediately before the *next* event ("X, grade 2 Y") belongs to that next event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SCOPE_WORDS = 7

_PRE = re.compile(
    r"\b(?:denie[sd]|deny|denying|no|without|negative\s+for|no\s+evidence\s+of|no\s+signs?\s+of|"
    r"free\s+of|absence\s+of|absent|never\s+(?:had|developed|experienced)|"
    r"(?:has|have|had|did|does)\s+not\s+(?:had|have|develop(?:ed)?|experience[d]?|cause[d]?|report(?:ed)?)|"
    r"(?:has|have|had)\s+not\s+had\s+any|not\s+caused|rule[sd]?\s+out|ruled\s+out)\b",
    re.IGNORECASE,
)
_POST = re.compile(
    r"^[\s,]*(?:(?:which|that)\s+(?:he|she|they|the\s+patient|patient|pt)\s+denie[sd]|"
    r"(?:was|were|is|are)\s+(?:denied|absent|not\s+(?:seen|observed|present|reported|noted))|"
    r"(?:was|were)\s+ruled\s+out|not\s+(?:seen|observed|reported|noted))\b",
    re.IGNORECASE,
)
_POST_CLAUSE = re.compile(
    r",\s*(?:which|that)\s+(?:he|she|they|the\s+patient|patient|pt)\s+(?:denie[sd]|does\s+not\s+have)\b",
    re.IGNORECASE,
)
_TERMINATOR = re.compile(
    r"\b(?:but|however|although|though|except|aside\s+from|apart\s+from|yet|whereas|while)\b|[;:]",
    re.IGNORECASE,
)
_PSEUDO = re.compile(r"\b(?:no\s+longer|not\s+only|no\s+change|no\s+increase|without\s+difficulty)\b", re.I)

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5}
_GRADE_NUM = r"([1-5]|iv|v|i{1,3})(?![0-9a-z])"
_GRADE_BEFORE = re.compile(
    rf"(?:ctcae\s+(?:v5\s+)?)?(?:grade|gr\.?|g)\s*{_GRADE_NUM}\s*(?:\([^)]*\)\s*)?$", re.IGNORECASE
)
_GRADE_INSIDE = re.compile(rf"\b(?:grade|gr\.?|g)\s*{_GRADE_NUM}", re.IGNORECASE)
_GRADE_AFTER = re.compile(
    rf"^\s*[,(\-–:]?\s*(?:ctcae\s+)?(?:v5\.?0?\s+)?(?:grade|gr\.?|g)\s*{_GRADE_NUM}", re.IGNORECASE
)
SEVERITY_GRADES: dict[str, int] = {
    "mild": 1,
    "moderate": 2,
    "severe": 3,
    "life-threatening": 4,
    "life threatening": 4,
    "fatal": 5,
}
_SEVERITY = r"(mild|moderate|severe|life[- ]threatening|fatal)"
_SEV_INSIDE = re.compile(rf"^{_SEVERITY}(?:ly)?\s+\S", re.IGNORECASE)
_LEADING_QUALIFIERS = re.compile(
    rf"^(?:(?:{_SEVERITY}(?:ly)?|(?:ctcae\s+)?(?:grade|gr\.?|g)\s*{_GRADE_NUM}|new|some|acute|transient)[\s,]+)+",
    re.IGNORECASE,
)
_SEV_BEFORE = re.compile(rf"\b{_SEVERITY}(?:ly)?\s+(?:[a-z\-]+\s+)?$", re.IGNORECASE)
_SEV_AFTER = re.compile(rf"^\s*(?:,|\(|-|,?\s*(?:which\s+was|that\s+was|was|is))\s*{_SEVERITY}\b", re.IGNORECASE)


def is_negated(sentence: str, event_start: int, event_end: int) -> bool:
    """Whether the sentence denies the event at ``[event_start, event_end)`` (offsets into ``sentence``)."""
    before = sentence[:event_start]
    for match in _PRE.finditer(before):
        between = before[match.end() :]
        if _PSEUDO.match(before[match.start() :]):
            continue
        if _TERMINATOR.search(between):
            continue
        if len(between.split()) <= MAX_SCOPE_WORDS:
            return True
    after = sentence[event_end:]
    if _POST.match(after):
        return True
    denial = _POST_CLAUSE.search(after)
    return denial is not None and not _TERMINATOR.search(after[: denial.start()])


@dataclass(frozen=True)
class Severity:
    grade: int | None
    severity_word: str | None


def severity(sentence: str, start: int, end: int, window_start: int = 0, window_end: int | None = None) -> Severity:
    """Grade and severity word of the event at ``[start, end)``.

    ``window_start`` / ``window_end`` bound the search at the neighbouring events so that a phrase is not
    read twice; a grade phrase that runs straight into the next event belongs to it.
    """
    stop = len(sentence) if window_end is None else window_end
    mention = sentence[start:end]
    before = sentence[window_start:start]
    after = sentence[end:stop]
    grade = _grade(_GRADE_INSIDE.search(mention)) or _grade(_GRADE_BEFORE.search(before[-40:]))
    if grade is None:
        match = _GRADE_AFTER.match(after)
        runs_into_next = match is not None and window_end is not None and not after[match.end() :].strip()
        if match and not runs_into_next:
            grade = _grade(match)
    word = None
    sev = _SEV_INSIDE.match(mention) or _SEV_BEFORE.search(before[-30:]) or _SEV_AFTER.match(after)
    if sev:
        word = sev.group(1).lower().replace(" ", "-")
    if grade is None and word is not None:
        grade = SEVERITY_GRADES.get(word)
    return Severity(grade, word)


def core_mention(mention: str) -> str:
    """The mention without leading severity / grade / onset words ("severe acute mucositis" -> "mucositis"),
    for term lookup; the mention itself keeps them (ADE-Corpus-V2 annotates "severe hepatotoxicity")."""
    core = _LEADING_QUALIFIERS.sub("", mention).strip()
    return core or mention


def _grade(match: re.Match[str] | None) -> int | None:
    if match is None:
        return None
    value = match.group(1).lower()
    return int(value) if value.isdigit() else _ROMAN.get(value)
