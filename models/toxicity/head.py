"""From the classifier's logit rows (one per sentence of a note) to one finding per symptom.

The classifier reads a note sentence by sentence (a sentence longer than the window is cut on
whitespace): short inputs are cheap, and each symptom is stated in one sentence. The note-level score of
"present" is the best sentence's, of "absent" likewise, of "not_mentioned" the worst sentence's (a symptom
mentioned anywhere is mentioned); the status is the highest of the three, the grade comes from the
sentence most sure the symptom is present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.encoder_infer import softmax
from models.records import ToxicityFinding, ToxicityStatus
from models.runtime import window_spans
from models.toxicity.labels import GRADE_CLASSES, STATUSES, HeadLayout

_STATUS_NAMES: tuple[ToxicityStatus, ...] = ("present", "absent", "not_mentioned")
LogitsFn = Callable[[Sequence[str]], np.ndarray]  # window texts -> logit rows [n, layout.width]
TokenCount = Callable[[str], int]  # tokens of a text without the special tokens


def decode_note(rows: np.ndarray, layout: HeadLayout) -> list[ToxicityFinding]:
    """Findings (in the layout's symptom order) from the logit rows of one note's windows."""
    n = len(layout.symptoms)
    status = softmax(rows[:, : layout.grade_offset].reshape(len(rows), n, len(STATUSES)))
    grades = softmax(rows[:, layout.grade_offset :].reshape(len(rows), n, len(GRADE_CLASSES)))
    findings: list[ToxicityFinding] = []
    for k, symptom in enumerate(layout.symptoms):
        scores = (
            float(status[:, k, 0].max()),
            float(status[:, k, 1].max()),
            float(status[:, k, 2].min()),
        )
        best = int(np.argmax(scores))
        grade: int | None = None
        if best == 0:
            window = int(status[:, k, 0].argmax())
            grade_class = GRADE_CLASSES[int(grades[window, k].argmax())]
            grade = None if grade_class == "none" else int(grade_class)
        findings.append(
            ToxicityFinding(symptom=symptom, status=_STATUS_NAMES[best], grade=grade, confidence=round(scores[best], 6))
        )
    return findings


def note_windows(text: str, count: TokenCount, max_tokens: int) -> list[tuple[int, int]]:
    """Sentence windows of at most ``max_tokens`` tokens (none for a blank note)."""
    if not text.strip():
        return []
    return window_spans(text, count, max_tokens, pack=False)


def predict_notes(
    texts: Sequence[str], logits: LogitsFn, count: TokenCount, max_tokens: int, layout: HeadLayout
) -> list[list[ToxicityFinding]]:
    """One list of findings per note; all windows of the batch go through ``logits`` in one call."""
    owners: list[int] = []
    pieces: list[str] = []
    for index, text in enumerate(texts):
        for start, end in note_windows(text, count, max_tokens):
            owners.append(index)
            pieces.append(text[start:end])
    rows = logits(pieces) if pieces else np.zeros((0, layout.width), dtype=np.float32)
    out: list[list[ToxicityFinding]] = []
    owner_array = np.asarray(owners)
    for index in range(len(texts)):
        mine = rows[owner_array == index] if len(owners) else rows[:0]
        if len(mine) == 0:  # an empty note: nothing is mentioned
            out.append([ToxicityFinding(s, "not_mentioned", None, 1.0) for s in layout.symptoms])
        else:
            out.append(decode_note(mine, layout))
    return out


def as_truth_map(findings: Sequence[ToxicityFinding]) -> dict[str, tuple[str, int | None]]:
    return {f.symptom: (f.status, f.grade) for f in findings}


def counter_from(tokenizer: Any) -> TokenCount:
    """Token count without specials, from a ``tokenizers.Tokenizer`` that must not truncate."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count
