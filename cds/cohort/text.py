"""Text that remembers where things are: templates render to fragments with named character spans.

Ground-truth offsets are never searched for afterwards: each drug and event is placed by the
renderer, so a phrase that occurs twice in a note still gets the span of the mention meant.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

Span = tuple[int, int]

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Fragment:
    """A piece of text with named spans relative to its start (nested names joined with '.')."""

    text: str
    spans: Mapping[str, Span] = field(default_factory=dict)


def render(template: str, values: Mapping[str, str | Fragment]) -> Fragment:
    """Fill ``{name}`` fields; each field and every span inside a fragment value gets its offsets."""
    parts: list[str] = []
    spans: dict[str, Span] = {}
    pos = 0
    for literal, name, _spec, _conv in _FORMATTER.parse(template):
        parts.append(literal)
        pos += len(literal)
        if name is None:
            continue
        value = values[name]
        frag = value if isinstance(value, Fragment) else Fragment(value)
        spans[name] = (pos, pos + len(frag.text))
        for key, (start, end) in frag.spans.items():
            spans[f"{name}.{key}"] = (pos + start, pos + end)
        parts.append(frag.text)
        pos += len(frag.text)
    return Fragment("".join(parts), spans)


def sentence_case(fragment: Fragment) -> Fragment:
    """Upper-case the first letter; lengths do not change, so spans stay valid."""
    text = fragment.text
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return Fragment(text, fragment.spans)


@dataclass(frozen=True)
class AdeMention:
    """A drug-event pair in a sentence; ``drug_key``/``event_key`` name spans of the fragment."""

    drug: str
    ctcae_term: str
    grade: int | None
    negated: bool
    drug_key: str
    event_key: str


@dataclass(frozen=True)
class ToxMention:
    """One of the 12 radiotherapy symptoms stated present or absent."""

    symptom: str
    status: str  # present | absent
    grade: int | None
    key: str


@dataclass(frozen=True)
class ComboMention:
    """Drugs given together and what the sentence says of the combination (POS, COMB, NEG)."""

    drugs: tuple[str, ...]
    label: str
    drug_keys: tuple[str, ...]


@dataclass(frozen=True)
class Sentence:
    """One sentence and the facts it states."""

    fragment: Fragment
    ades: tuple[AdeMention, ...] = ()
    toxicities: tuple[ToxMention, ...] = ()
    combos: tuple[ComboMention, ...] = ()


def join_sentences(*sentences: Sentence) -> Sentence:
    """Several sentences that must stay together (an event and the decision it caused) as one unit."""
    names = [f"s{i}" for i in range(len(sentences))]
    frag = render(" ".join(f"{{{n}}}" for n in names), {n: s.fragment for n, s in zip(names, sentences, strict=True)})
    ades: list[AdeMention] = []
    tox: list[ToxMention] = []
    combos: list[ComboMention] = []
    for n, s in zip(names, sentences, strict=True):
        ades += [replace(a, drug_key=f"{n}.{a.drug_key}", event_key=f"{n}.{a.event_key}") for a in s.ades]
        tox += [replace(t, key=f"{n}.{t.key}") for t in s.toxicities]
        combos += [replace(c, drug_keys=tuple(f"{n}.{k}" for k in c.drug_keys)) for c in s.combos]
    return Sentence(frag, tuple(ades), tuple(tox), tuple(combos))


@dataclass(frozen=True)
class PlacedAde:
    mention: AdeMention
    drug_span: Span
    event_span: Span


@dataclass(frozen=True)
class PlacedTox:
    mention: ToxMention
    span: Span


@dataclass(frozen=True)
class PlacedCombo:
    mention: ComboMention
    sentence_span: Span
    drug_spans: tuple[Span, ...]


@dataclass
class NoteDraft:
    """Accumulates labelled paragraphs; every fact is converted to absolute note offsets on the way in."""

    parts: list[str] = field(default_factory=list)
    length: int = 0
    ades: list[PlacedAde] = field(default_factory=list)
    toxicities: list[PlacedTox] = field(default_factory=list)
    combos: list[PlacedCombo] = field(default_factory=list)

    def _append(self, text: str) -> int:
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start

    def line(self, text: str) -> None:
        """A plain line without facts (title, header)."""
        self._append(text + "\n")

    def paragraph(self, label: str | None, sentences: Sequence[Sentence], separator: str = " ") -> None:
        """``label`` then the sentences joined by ``separator``; an empty paragraph is skipped."""
        if not sentences:
            return
        if self.parts:
            self._append("\n")
        if label:
            self._append(label)
        for i, sentence in enumerate(sentences):
            if i:
                self._append(separator)
            self._place(sentence)
        self._append("\n")

    def _place(self, sentence: Sentence) -> None:
        frag = sentence.fragment
        base = self._append(frag.text)

        def absolute(key: str) -> Span:
            start, end = frag.spans[key]
            return (base + start, base + end)

        for ade in sentence.ades:
            self.ades.append(PlacedAde(ade, absolute(ade.drug_key), absolute(ade.event_key)))
        for tox in sentence.toxicities:
            self.toxicities.append(PlacedTox(tox, absolute(tox.key)))
        for combo in sentence.combos:
            spans = tuple(absolute(k) for k in combo.drug_keys)
            self.combos.append(PlacedCombo(combo, (base, base + len(frag.text)), spans))

    @property
    def text(self) -> str:
        return "".join(self.parts)
