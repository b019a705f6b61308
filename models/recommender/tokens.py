"""Prompt token ids: prefix and suffixes encoded separately, the same way in training and at run time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from models.errors import ModelLoadError
from models.recommender.prompt import PatientSummary, PromptFormat, render_prefix, render_suffix


class TextEncoder(Protocol):
    """The part of ``tokenizers.Tokenizer`` the recommender needs."""

    def encode(self, sequence: str, add_special_tokens: bool = ...) -> Any: ...


def encode_ids(tokenizer: TextEncoder, text: str) -> list[int]:
    """Token ids without special tokens (no BOS: prefix and suffix are joined by concatenation)."""
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def answer_ids(tokenizer: TextEncoder, fmt: PromptFormat) -> tuple[int, int]:
    """The single token ids of the yes and no answers, or a ModelLoadError naming the problem."""
    yes, no = encode_ids(tokenizer, fmt.yes), encode_ids(tokenizer, fmt.no)
    if len(yes) != 1 or len(no) != 1 or yes == no:
        raise ModelLoadError(
            "OV-2014",
            f"the tokenizer encodes the answers {fmt.yes!r} -> {yes} and {fmt.no!r} -> {no}; each must be "
            "one distinct token: set PromptFormat.yes/no to words this tokenizer keeps whole",
        )
    return yes[0], no[0]


def encode_prompt(
    tokenizer: TextEncoder, fmt: PromptFormat, patient: PatientSummary, candidates: Sequence[str]
) -> tuple[list[int], list[list[int]]]:
    """The patient prefix ids (cut to ``max_prefix_tokens``) and one suffix id list per candidate."""
    prefix = encode_ids(tokenizer, render_prefix(patient, fmt))[: fmt.max_prefix_tokens]
    suffixes = [encode_ids(tokenizer, render_suffix(c, fmt)) for c in candidates]
    return prefix, suffixes
