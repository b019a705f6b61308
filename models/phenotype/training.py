"""Training examples for the phenotype tagger: one per distinct sentence of generated notes, spans inside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.encoder_train import SpanExample
from models.runtime import split_sentences_with_offsets

CHECK_TEXTS: tuple[str, ...] = (
    "Specimen: left breast, core needle biopsy.",
    "Diagnosis: invasive ductal carcinoma, grade 2.",
    "Biomarkers: ER positive (90%), PR negative, HER2 3+.",
    "Staging: pT2 N1 M0, stage IIB.",
    "Testing shows PD-L1 TPS 80%. EGFR wild-type.",
    "Oncology consult for newly diagnosed NSCLC of the RUL measuring 3.1 cm.",
)


def sentence_examples(records: Sequence[dict[str, Any]]) -> list[SpanExample]:
    """Records with ``text`` and ``spans`` ([start, end, TYPE]) -> sentence examples, duplicates dropped."""
    examples: list[SpanExample] = []
    seen: set[tuple[str, tuple[tuple[int, int, str], ...]]] = set()
    for record in records:
        text: str = record["text"]
        marks = [(int(a), int(b), str(kind)) for a, b, kind in record["spans"]]
        for start, end in split_sentences_with_offsets(text):
            inside = tuple(sorted((a - start, b - start, kind) for a, b, kind in marks if start <= a and b <= end))
            key = (text[start:end], inside)
            if key not in seen:
                seen.add(key)
                examples.append(SpanExample(text[start:end], inside))
    return examples
