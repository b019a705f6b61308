"""Misspelling injection that keeps character spans valid: for training variety and robustness tests.

Edits stay inside words of four or more letters (first letter kept), so a span that starts and ends on
word boundaries still covers the same words afterwards; offsets are remapped, never searched for.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

_WORD = re.compile(r"[A-Za-z]{4,}")
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"

Span = tuple[int, int, str]


def misspell(word: str, rng: random.Random) -> str:
    """One typing slip: drop, swap, double or replace a letter after the first."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1 :]
    if op == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    letter = rng.choice(_KEYBOARD)
    letter = letter.upper() if word[i].isupper() else letter
    return word[:i] + letter + word[i + 1 :]


def inject_misspellings(text: str, spans: Sequence[Span], rate: float, seed: int) -> tuple[str, list[Span]]:
    """Misspell each eligible word with probability ``rate``; returns the new text and remapped spans."""
    rng = random.Random(seed)
    parts: list[str] = []
    # new offset of every old boundary position 0..len(text)
    mapping = list(range(len(text) + 1))
    pos = 0
    shift = 0
    for match in _WORD.finditer(text):
        start, end = match.span()
        parts.append(text[pos:start])
        for k in range(pos, start + 1):
            mapping[k] = k + shift
        word = match.group(0)
        # Abbreviations and roman numerals (IDC, IIIA) are left alone: a slip there changes the fact itself.
        new = misspell(word, rng) if rng.random() < rate and not word.isupper() else word
        parts.append(new)
        for k in range(start + 1, end):
            mapping[k] = start + shift + min(k - start, len(new))
        shift += len(new) - len(word)
        pos = end
    parts.append(text[pos:])
    for k in range(pos, len(text) + 1):
        mapping[k] = k + shift
    return "".join(parts), [(mapping[a], mapping[b], kind) for a, b, kind in spans]
