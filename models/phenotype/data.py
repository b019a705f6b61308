"""Labelled phenotype notes on disk (JSONL: ``text``, ``truth`` {field: value}, optional ``spans``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import DataFormatError
from models.phenotype.labels import FIELDS
from models.phenotype.noise import inject_misspellings
from models.text_files import jsonl_values


@dataclass(frozen=True)
class LabelledNote:
    text: str
    truth: dict[str, str | None]
    spans: tuple[tuple[int, int, str], ...] = ()


def _span(raw: Any, text: str, where: str) -> tuple[int, int, str]:
    if (
        not isinstance(raw, list)
        or len(raw) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw[:2])
        or not isinstance(raw[2], str)
    ):
        raise DataFormatError(
            "OV-2121", f"{where}: each span must be [start, end, tag] (two integers, a string), got {raw!r}"
        )
    start, end, tag = raw
    # Misspelling injection remaps every offset, so one outside the text would fail far from the file.
    if not 0 <= start < end <= len(text):
        raise DataFormatError(
            "OV-2121", f"{where}: span {raw!r} lies outside the text (length {len(text)}); fix the offsets"
        )
    return start, end, tag


def parse_record(record: Any, where: str) -> LabelledNote:
    if not isinstance(record, dict):
        raise DataFormatError("OV-2121", f"{where}: expected a JSON object per line, got {type(record).__name__}")
    if not isinstance(record.get("text"), str) or not isinstance(record.get("truth"), dict):
        raise DataFormatError("OV-2121", f"{where}: each line needs a string 'text' and an object 'truth'")
    unknown = set(record["truth"]) - set(FIELDS)
    if unknown:
        raise DataFormatError("OV-2122", f"{where}: unknown truth fields {sorted(unknown)}; known: {list(FIELDS)}")
    # str() would turn a list or number into a label that never matches, scoring it as a silent miss.
    wrong = {name: value for name, value in record["truth"].items() if value is not None and not isinstance(value, str)}
    if wrong:
        raise DataFormatError(
            "OV-2121", f"{where}: truth values must be strings or null, got {wrong!r}; quote or null them"
        )
    truth: dict[str, str | None] = {name: record["truth"].get(name) for name in FIELDS}
    raw_spans = record.get("spans")
    raw_spans = [] if raw_spans is None else raw_spans
    if not isinstance(raw_spans, list):
        raise DataFormatError("OV-2121", f"{where}: 'spans' must be a list of [start, end, tag], got {raw_spans!r}")
    spans = tuple(_span(raw, record["text"], where) for raw in raw_spans)
    return LabelledNote(record["text"], truth, spans)


def read_notes(path: Path) -> list[LabelledNote]:
    lines = jsonl_values(path, "OV-2121", "a .jsonl file of labelled notes (text, truth, optional spans)")
    return [parse_record(record, f"{path}:{number}") for number, record in lines]


def misspelled(notes: Sequence[LabelledNote], rate: float, seed: int) -> list[LabelledNote]:
    """The same notes with ``rate`` of their words misspelled (truth values unchanged, spans remapped)."""
    out = []
    for i, note in enumerate(notes):
        text, spans = inject_misspellings(note.text, note.spans, rate, seed + i)
        out.append(LabelledNote(text, note.truth, tuple(spans)))
    return out
