"""Summary metrics: ROUGE-L against the reference and the faithfulness rates the guard measures. Pure.

Rates are pooled over the whole evaluation set:
- ``hallucinated_event_rate``: events stated that are not in the record / events stated;
- ``omitted_serious_event_rate``: serious events of the records not stated as serious / serious events;
- ``numeric_error_rate``: wrong numeric claims (counts, grades, days) / numeric claims stated;
- ``guard_fallback_rate``: summaries the guard rejects / summaries.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from models.summariser.guard import GuardReport, check_summary
from models.summariser.record import DrugGroup

_TOKEN = re.compile(r"\w+|[^\w\s]")


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word and punctuation tokens (longest common subsequence)."""
    a, b = _TOKEN.findall(prediction.lower()), _TOKEN.findall(reference.lower())
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class SummaryScores:
    rouge_l: float
    hallucinated_event_rate: float
    omitted_serious_event_rate: float
    numeric_error_rate: float
    guard_fallback_rate: float
    summaries: int
    events_stated: int
    serious_events: int
    numbers_stated: int

    def as_record(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def score_summaries(
    texts: Sequence[str], groups: Sequence[DrugGroup], references: Sequence[str], vocabulary: Collection[str]
) -> tuple[SummaryScores, list[GuardReport]]:
    reports = [check_summary(t, g, vocabulary) for t, g in zip(texts, groups, strict=True)]
    stated = sum(len(r.stated_events) for r in reports)
    serious = sum(len(g.serious_terms) for g in groups)
    numbers = sum(r.numbers_stated for r in reports)
    rouge = [rouge_l(t, ref) for t, ref in zip(texts, references, strict=True)]
    scores = SummaryScores(
        rouge_l=sum(rouge) / len(rouge) if rouge else 0.0,
        hallucinated_event_rate=_ratio(sum(len(r.hallucinated) for r in reports), stated),
        omitted_serious_event_rate=_ratio(sum(len(r.omitted_serious) for r in reports), serious),
        numeric_error_rate=_ratio(sum(len(r.numeric_errors) for r in reports), numbers),
        guard_fallback_rate=_ratio(sum(not r.passed for r in reports), len(reports)),
        summaries=len(reports),
        events_stated=stated,
        serious_events=serious,
        numbers_stated=numbers,
    )
    return scores, reports
