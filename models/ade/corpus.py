"""ADE-Corpus-V2 in and out: sentences with drug spans, adverse-event spans and their pairs.

``DRUG-AE.rel`` lines are ``PMID|sentence|effect|begin|end|drug|begin|end`` with *document* offsets
(title + abstract), so spans are found inside the sentence by string search. When a string occurs more
than once, the occurrence is chosen that agrees with the other annotations of the same sentence on
where the sentence starts in its document (the most common ``begin - position`` shift).
``ADE-NEG.txt`` lines are ``PMID NEG sentence``: no drug and no event annotated.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import DataFormatError
from models.text_files import read_text

Span = tuple[int, int]
REL_FILE = "DRUG-AE.rel"
NEG_FILE = "ADE-NEG.txt"


@dataclass
class AdeSentence:
    """One sentence and its gold annotation; ``pairs`` are (drug span, event span)."""

    pmid: str
    text: str
    drugs: set[Span] = field(default_factory=set)
    events: set[Span] = field(default_factory=set)
    pairs: set[tuple[Span, Span]] = field(default_factory=set)


@dataclass(frozen=True)
class _RelLine:
    pmid: str
    sentence: str
    effect: str
    effect_begin: int
    drug: str
    drug_begin: int
    number: int


def _occurrences(text: str, needle: str) -> list[int]:
    found, start = [], text.find(needle)
    while start >= 0:
        found.append(start)
        start = text.find(needle, start + 1)
    return found


def _parse_rel(path: Path) -> list[_RelLine]:
    lines: list[_RelLine] = []
    text = read_text(path, "OV-2060", f"an ADE-Corpus-V2 {REL_FILE} file")
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        parts = raw.split("|")
        if len(parts) != 8:
            raise DataFormatError(
                "OV-2060",
                f"{path}:{number} has {len(parts)} '|' fields, expected 8 "
                "(PMID|sentence|effect|begin|end|drug|begin|end); is this ADE-Corpus-V2 DRUG-AE.rel?",
            )
        try:
            effect_begin, effect_end, drug_begin, drug_end = (int(parts[i]) for i in (3, 4, 6, 7))
        except ValueError as exc:
            raise DataFormatError(
                "OV-2061", f"{path}:{number}: begin and end offsets (fields 4, 5, 7, 8) must be integers"
            ) from exc
        # Every line of the published corpus satisfies this; a line that does not was edited or shifted,
        # and its begin offset would steer the span choice below to the wrong occurrence.
        for what, string, begin, end in (
            ("effect", parts[2], effect_begin, effect_end),
            ("drug", parts[5], drug_begin, drug_end),
        ):
            if begin < 0 or end - begin != len(string):
                raise DataFormatError(
                    "OV-2195",
                    f"{path}:{number}: {what} offsets {begin}..{end} do not span {what} {string!r} "
                    f"({len(string)} characters); fix the offsets",
                )
        lines.append(_RelLine(parts[0], parts[1], parts[2], effect_begin, parts[5], drug_begin, number))
    return lines


def _place(sentence: str, needle: str, begin: int, shift: int | None) -> Span | None:
    positions = _occurrences(sentence, needle)
    if not positions:
        return None
    if shift is not None:
        positions.sort(key=lambda p: abs(begin - p - shift))
    return positions[0], positions[0] + len(needle)


def read_rel(path: Path) -> list[AdeSentence]:
    """Sentences of ``DRUG-AE.rel`` with spans and pairs; a drug or effect not found in its sentence is an error."""
    grouped: dict[tuple[str, str], list[_RelLine]] = defaultdict(list)
    for line in _parse_rel(path):
        grouped[(line.pmid, line.sentence)].append(line)
    sentences: list[AdeSentence] = []
    for (pmid, text), lines in grouped.items():
        shifts: Counter[int] = Counter()
        for line in lines:
            for needle, begin in ((line.effect, line.effect_begin), (line.drug, line.drug_begin)):
                for position in _occurrences(text, needle):
                    shifts[begin - position] += 1
        shift = shifts.most_common(1)[0][0] if shifts else None
        sentence = AdeSentence(pmid, text)
        for line in lines:
            drug = _place(text, line.drug, line.drug_begin, shift)
            event = _place(text, line.effect, line.effect_begin, shift)
            # No line of the published corpus misses; dropping one would quietly shrink the gold set.
            if drug is None or event is None:
                what, string = ("drug", line.drug) if drug is None else ("effect", line.effect)
                raise DataFormatError(
                    "OV-2196", f"{path}:{line.number}: {what} {string!r} does not occur in its sentence; fix the line"
                )
            sentence.drugs.add(drug)
            sentence.events.add(event)
            sentence.pairs.add((drug, event))
        sentences.append(sentence)
    return sentences


def read_neg(path: Path) -> list[AdeSentence]:
    sentences: list[AdeSentence] = []
    text = read_text(path, "OV-2062", f"an ADE-Corpus-V2 {NEG_FILE} file")
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        parts = raw.split(" ", 2)
        if len(parts) != 3 or parts[1] != "NEG":
            raise DataFormatError(
                "OV-2062", f"{path}:{number} is not 'PMID NEG sentence'; is this ADE-Corpus-V2 ADE-NEG.txt?"
            )
        sentences.append(AdeSentence(parts[0], parts[2].strip()))
    return sentences


def read_corpus(directory: Path) -> list[AdeSentence]:
    """Positive and negative sentences of a folder in ADE-Corpus-V2 format, one record per unique sentence.

    A sentence listed in both files keeps its positive annotation.
    """
    rel, neg = directory / REL_FILE, directory / NEG_FILE
    if not directory.is_dir() or not rel.is_file() or not neg.is_file():
        raise DataFormatError(
            "OV-2063",
            f"{directory} must be a folder holding {REL_FILE} and {NEG_FILE} (ADE-Corpus-V2 format)",
        )
    positives = read_rel(rel)
    seen = {(s.pmid, s.text) for s in positives}
    negatives: list[AdeSentence] = []
    for sentence in read_neg(neg):
        key = (sentence.pmid, sentence.text)
        if key not in seen:
            seen.add(key)
            negatives.append(sentence)
    return positives + negatives


def is_dev(pmid: str, dev_fraction: float = 0.2, salt: str = "oncovigil-ade") -> bool:
    """Deterministic split by PubMed id: the same id always lands on the same side, on every machine."""
    digest = hashlib.sha256(f"{salt}:{pmid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction


def split_by_pmid(
    sentences: Sequence[AdeSentence], dev_fraction: float = 0.2
) -> tuple[list[AdeSentence], list[AdeSentence]]:
    train = [s for s in sentences if not is_dev(s.pmid, dev_fraction)]
    dev = [s for s in sentences if is_dev(s.pmid, dev_fraction)]
    return train, dev


def write_corpus(directory: Path, sentences: Iterable[AdeSentence]) -> None:
    """Write sentences in ADE-Corpus-V2 format; offsets are sentence-relative (document = sentence)."""
    directory.mkdir(parents=True, exist_ok=True)
    rel_lines: list[str] = []
    neg_lines: list[str] = []
    for s in sentences:
        if "|" in s.text or "\n" in s.text:
            continue  # cannot be represented in the pipe-separated format
        if not s.pairs:
            neg_lines.append(f"{s.pmid} NEG {s.text}")
        for (d0, d1), (e0, e1) in sorted(s.pairs):
            rel_lines.append(f"{s.pmid}|{s.text}|{s.text[e0:e1]}|{e0}|{e1}|{s.text[d0:d1]}|{d0}|{d1}")
    (directory / REL_FILE).write_text("".join(f"{line}\n" for line in rel_lines), encoding="utf-8")
    (directory / NEG_FILE).write_text("".join(f"{line}\n" for line in neg_lines), encoding="utf-8")
