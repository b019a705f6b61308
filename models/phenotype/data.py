"""Labelled phenotype notes on disk (JSONL: ``text``, ``truth`` {field: value}, optional ``spans``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import DataFormatError
from models.phenotype.labels import FIELDS
from models.phenotype.noise import inject_misspellings


@dataclass(frozen=True)
class LabelledNote:
    text: str
    truth: dict[str, str | None]
    spans: tuple[tuple[int, int, str], ...] = ()


def parse_record(record: dict[str, Any], where: str) -> LabelledNote:
    if not isinstance(record.get("text"), str) or not isinstance(record.get("truth"), dict):
        raise DataFormatError("OV-2121", f"{where}: each line needs a string 'text' and an object 'truth'")
    unknown = set(record["truth"]) - set(FIELDS)
    if unknown:
        raise DataFormatError("OV-2122", f"{where}: unknown truth fields {sorted(unknown)}; known: {list(FIELDS)}")
    truth = {name: (None if record["truth"].get(name) is None else str(record["truth"][name])) for name in FIELDS}
    spans = tuple((int(a), int(b), str(k)) for a, b, k in record.get("spans", []))
    return LabelledNote(record["text"], truth, spans)


def read_notes(path: Path) -> list[LabelledNote]:
    notes: list[LabelledNote] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError("OV-2121", f"{path}:{number}: not JSON ({exc.msg})") from exc
        notes.append(parse_record(record, f"{path}:{number}"))
    return notes


def misspelled(notes: Sequence[LabelledNote], rate: float, seed: int) -> list[LabelledNote]:
    """The same notes with ``rate`` of their words misspelled (truth values unchanged, spans remapped)."""
    out = []
    for i, note in enumerate(notes):
        text, spans = inject_misspellings(note.text, note.spans, rate, seed + i)
        out.append(LabelledNote(text, note.truth, tuple(spans)))
    return out
