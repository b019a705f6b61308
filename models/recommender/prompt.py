"""The LAMO question: a structured patient summary, then one candidate drug, then a yes/no question.

The summary (the *prefix*) is the same for every candidate of a visit, so the runtime encodes it once and
scores all candidates as short *suffixes* over its cached keys and values. Prefix and suffix are therefore
always tokenised separately and their ids concatenated, in training and at run time alike, so that a
byte-level BPE merge across the seam can never make the cached and the full forward pass disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from models.errors import DataFormatError


@dataclass(frozen=True)
class PatientSummary:
    """What LAMO's structured summary holds; plain strings, no FHIR."""

    age: int
    sex: str
    conditions: tuple[str, ...] = ()
    previous_medications: tuple[str, ...] = ()
    allergies: tuple[str, ...] = ()
    history: str = ""

    @classmethod
    def from_json(cls, data: Any) -> PatientSummary:
        """Parse the ``patient`` object of a visits.jsonl line (lists become tuples)."""
        if not isinstance(data, dict):
            raise DataFormatError("OV-2075", "a visit's 'patient' must be an object; fix the data file")
        try:
            return cls(
                age=int(data["age"]),
                sex=str(data["sex"]),
                conditions=_strings(data.get("conditions", []), "conditions"),
                previous_medications=_strings(data.get("previous_medications", []), "previous_medications"),
                allergies=_strings(data.get("allergies", []), "allergies"),
                history=str(data.get("history", "") or ""),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: an age of Infinity
            raise DataFormatError(
                "OV-2076",
                f"a visit's 'patient' lacks or mistypes a field ({exc}); it needs age (int) and sex",
            ) from exc

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("conditions", "previous_medications", "allergies"):
            data[key] = list(data[key])
        return data


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataFormatError("OV-2077", f"'patient.{name}' must be a list of strings; fix the data file")
    return tuple(value)


@dataclass(frozen=True)
class PromptFormat:
    """The prompt wording and answer tokens; stored with the adapter so training and serving agree.

    ``yes`` and ``no`` must each encode to exactly one token (with their leading space) in the model's
    tokenizer; the score is P(yes) from those two logits.
    """

    max_conditions: int = 12
    max_medications: int = 12
    max_allergies: int = 6
    max_history_chars: int = 240
    max_prefix_tokens: int = 200
    max_drug_chars: int = 60
    yes: str = " yes"
    no: str = " no"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PromptFormat:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _listing(items: Sequence[str], limit: int) -> str:
    cleaned = [" ".join(i.split()) for i in items if i.strip()]
    if not cleaned:
        return "none recorded"
    shown = cleaned[:limit]
    more = len(cleaned) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def render_prefix(patient: PatientSummary, fmt: PromptFormat) -> str:
    """The structured summary; ends with a newline so the candidate line starts a fresh pre-token."""
    history = " ".join(patient.history.split())
    if len(history) > fmt.max_history_chars:
        history = history[: fmt.max_history_chars].rsplit(" ", 1)[0] + " ..."
    who = f"{patient.age}-year-old {patient.sex}" if patient.age >= 0 else f"{patient.sex}, age unknown"
    return (
        f"Patient: {who}.\n"
        f"Active conditions: {_listing(patient.conditions, fmt.max_conditions)}.\n"
        f"Previous medications: {_listing(patient.previous_medications, fmt.max_medications)}.\n"
        f"Allergies: {_listing(patient.allergies, fmt.max_allergies)}.\n"
        f"History: {history or 'none recorded'}\n"
    )


def render_suffix(candidate: str, fmt: PromptFormat) -> str:
    """The candidate line and the question; the answer token follows directly."""
    drug = " ".join(candidate.split())[: fmt.max_drug_chars]
    return f"Candidate drug: {drug}\nIs {drug} effective and safe for this patient now? Answer:"
