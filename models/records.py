"""The typed records ``models`` hands out, and the component contract every extractor follows.

Text and plain records go in; these frozen dataclasses come out. ``models`` knows nothing of FHIR.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Literal, Protocol, TypeVar

ToxicityStatus = Literal["present", "absent", "not_mentioned"]
CombinationLabel = Literal["POS", "COMB", "NEG"]


@dataclass(frozen=True)
class AdeFinding:
    """A drug, an adverse event it is said to have caused, and what the text says about that event."""

    drug: str
    drug_span: tuple[int, int]
    event: str
    event_span: tuple[int, int]
    negated: bool
    grade: int | None
    severity_word: str | None
    ctcae_term: str | None
    meddra_code: str | None
    confidence: float


@dataclass(frozen=True)
class ToxicityFinding:
    """One of the fixed radiotherapy toxicity symptoms and its status in a note."""

    symptom: str
    status: ToxicityStatus
    grade: int | None
    confidence: float


@dataclass(frozen=True)
class DrugCombination:
    """Drugs a sentence says were given together, and whether the combination is said to work."""

    drugs: tuple[str, ...]
    label: CombinationLabel
    confidence: float
    sentence_span: tuple[int, int]


@dataclass(frozen=True)
class MedicationScore:
    """How likely a candidate drug is to be warranted for this visit (``p_yes``)."""

    drug: str
    p_yes: float


T = TypeVar("T")
R = TypeVar("R")
R_inv = TypeVar("R_inv")


class Extractor(Protocol[R_inv]):
    """spaCy-style component: ``predict`` is pure over a batch, ``pipe`` streams."""

    def predict(self, batch: Sequence[str]) -> list[R_inv]: ...

    def pipe(self, stream: Iterable[str], batch_size: int = 32) -> Iterator[R_inv]: ...


def pipe_batches(predict: Callable[[Sequence[T]], list[R]], stream: Iterable[T], batch_size: int) -> Iterator[R]:
    """Stream ``stream`` through ``predict`` ``batch_size`` items at a time, keeping input order."""
    iterator = iter(stream)
    while batch := list(islice(iterator, max(1, batch_size))):
        yield from predict(batch)
