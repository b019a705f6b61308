"""Candidate drug subsets of a sentence and the marked text the classifier reads.

Every subset of two or more drugs is a candidate relation (as in the DrugComb baseline), small subsets
first; big gold relations are almost always "all drugs of the sentence", so the full set is always a
candidate too. Candidates are tuples of positions into the sentence's ordered drug spans.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from models.drugcomb.data import DrugCombDoc, DrugSpan

OPEN_MARK = "<<"
CLOSE_MARK = ">>"
NO_COMB = "NO_COMB"
# Index 0 is "no combination"; the relation classes follow (NEG kept apart from COMB as the data has it).
CLASS_LABELS: tuple[str, ...] = (NO_COMB, "POS", "COMB", "NEG")


@dataclass(frozen=True)
class CandidateConfig:
    """How many subsets to consider per sentence and how much paragraph context to show."""

    max_size: int = 4
    max_candidates: int = 96
    context_chars: int = 0


def enumerate_candidates(n_drugs: int, max_size: int, max_candidates: int) -> list[tuple[int, ...]]:
    """Subsets of ``range(n_drugs)`` with 2..max_size members (pairs first), then the full set, capped."""
    out: list[tuple[int, ...]] = []
    for size in range(2, min(n_drugs, max_size) + 1):
        for combo in itertools.combinations(range(n_drugs), size):
            if len(out) >= max_candidates:
                break
            out.append(combo)
    full = tuple(range(n_drugs))
    if n_drugs > max_size and n_drugs >= 2:
        if len(out) >= max_candidates:
            out[-1] = full  # the full set matters more than the last of many small subsets
        else:
            out.append(full)
    return out


def mark_sentence(sentence: str, spans: Sequence[DrugSpan], chosen: Sequence[int]) -> str:
    """Wrap the chosen drug mentions (positions into ``spans``) in ``<< ... >>``; others stay plain."""
    return mark_with_focus(sentence, spans, chosen)[0]


Spans = tuple[tuple[int, int], ...]


def mark_with_focus(sentence: str, spans: Sequence[DrugSpan], chosen: Sequence[int]) -> tuple[str, Spans, Spans]:
    """The marked sentence, the chosen drug names' spans in it (focus) and the other drugs' spans (other)."""
    picked = set(chosen)
    parts: list[str] = []
    focus: list[tuple[int, int]] = []
    other: list[tuple[int, int]] = []
    cursor = shift = 0
    for index, span in sorted(enumerate(spans), key=lambda x: x[1].start):
        if span.start < cursor:  # overlapping mentions: the first one wins
            continue
        name = sentence[span.start : span.end]
        if index in picked:
            lead = sentence[cursor : span.start] + f"{OPEN_MARK} "
            parts += [lead, name, f" {CLOSE_MARK}"]
            start = span.start + shift + len(OPEN_MARK) + 1
            focus.append((start, start + len(name)))
            shift += len(OPEN_MARK) + len(CLOSE_MARK) + 2
        else:
            parts += [sentence[cursor : span.start], name]
            other.append((span.start + shift, span.end + shift))
        cursor = span.end
    parts.append(sentence[cursor:])
    return "".join(parts), tuple(focus), tuple(other)


def context_of(doc: DrugCombDoc, context_chars: int) -> str | None:
    """Paragraph text around the sentence (the sentence itself removed), at most ``context_chars`` long."""
    if context_chars <= 0:
        return None
    paragraph = doc.paragraph
    at = paragraph.find(doc.sentence)
    if at < 0:
        rest = paragraph
    else:
        before, after = paragraph[:at].strip(), paragraph[at + len(doc.sentence) :].strip()
        # Efficacy statements tend to follow the combination sentence (results, conclusions): after first.
        rest = f"{after} {before}".strip()
    return rest[:context_chars] or None


def training_candidates(
    doc: DrugCombDoc, config: CandidateConfig, max_negatives: int, rng: random.Random
) -> list[tuple[tuple[int, ...], str]]:
    """(candidate, class label) pairs: every gold relation plus up to ``max_negatives`` sampled non-relations."""
    position = {span.span_id: i for i, span in enumerate(doc.spans)}
    gold = {tuple(sorted(position[i] for i in rel.span_ids)): rel.label for rel in doc.relations}
    out = list(gold.items())
    negatives = [c for c in enumerate_candidates(len(doc.spans), config.max_size, 10_000) if c not in gold]
    if len(negatives) > max_negatives:
        negatives = rng.sample(negatives, max_negatives)
    out.extend((c, NO_COMB) for c in negatives)
    return out
