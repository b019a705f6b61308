"""The symptom list and the layout of the multi-head classifier's output row.

One logit row per note window: ``len(symptoms) * 3`` status logits (symptom-major: present, absent,
not_mentioned), then ``len(symptoms) * len(GRADE_CLASSES)`` grade logits. The symptom list is chosen at
training time and travels in the model card and ``toxicity.json``; nothing else hard-codes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.errors import DataFormatError

DEFAULT_SYMPTOMS: tuple[str, ...] = (
    "urinary urgency",
    "urinary frequency",
    "cystitis noninfective",
    "hematuria",
    "urinary incontinence",
    "urinary retention",
    "urinary tract pain",
    "proctitis",
    "diarrhea",
    "rectal hemorrhage",
    "fatigue",
    "erectile dysfunction",
)
STATUSES: tuple[str, ...] = ("present", "absent", "not_mentioned")
NOT_MENTIONED = STATUSES.index("not_mentioned")
# "none": present without a stated grade; then CTCAE grades 1..5.
GRADE_CLASSES: tuple[str, ...] = ("none", "1", "2", "3", "4", "5")
IGNORE = -100


@dataclass(frozen=True)
class HeadLayout:
    """Where each symptom's status and grade logits sit in the output row."""

    symptoms: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.symptoms or len(set(self.symptoms)) != len(self.symptoms):
            raise DataFormatError(
                "OV-2073", f"the symptom list must be non-empty and unique, got {list(self.symptoms)}"
            )

    @property
    def width(self) -> int:
        return len(self.symptoms) * (len(STATUSES) + len(GRADE_CLASSES))

    @property
    def grade_offset(self) -> int:
        return len(self.symptoms) * len(STATUSES)

    def labels(self) -> list[str]:
        """One name per output (config.json id2label), e.g. ``status:fatigue:present``, ``grade:fatigue:2``."""
        names = [f"status:{s}:{st}" for s in self.symptoms for st in STATUSES]
        names += [f"grade:{s}:{g}" for s in self.symptoms for g in GRADE_CLASSES]
        return names

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> HeadLayout:
        """Recover the symptom order from a model's label list (and check it has this layout)."""
        symptoms = tuple(dict.fromkeys(name.split(":", 2)[1] for name in labels if name.startswith("status:")))
        layout = cls(symptoms)
        if list(labels) != layout.labels():
            raise DataFormatError(
                "OV-2073", "the model's labels do not follow the toxicity head layout; rebuild the model"
            )
        return layout


def grade_target(status: str, grade: int | None) -> int:
    """Grade class index for a training target; only present symptoms teach the grade head."""
    if status != "present":
        return IGNORE
    if grade is None:
        return 0
    if not 1 <= grade <= 5:
        raise DataFormatError("OV-2073", f"CTCAE grade must be 1..5, got {grade}")
    return grade
