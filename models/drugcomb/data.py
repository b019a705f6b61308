"""DrugComb records (Tiktinsky et al., NAACL 2022) and the deterministic train/dev split.

One JSON line per sentence: ``doc_id, sentence, spans[{span_id, text, start, end}], rels[{class, spans}],
paragraph``. Parsing is strict: a malformed line is the user's to fix, so it raises ``DataFormatError``
with the line number. ``docs_from_note_records`` turns the synthetic cohort's combination truth into the
same records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import DataFormatError
from models.text_files import jsonl_values

RELATION_LABELS: tuple[str, ...] = ("POS", "COMB", "NEG")


@dataclass(frozen=True)
class DrugSpan:
    """A drug mention: its id within the sentence and character offsets into the sentence."""

    span_id: int
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class GoldRelation:
    """A combination of drug span ids and its class (POS, COMB or NEG)."""

    span_ids: tuple[int, ...]
    label: str


@dataclass(frozen=True)
class DrugCombDoc:
    """One sentence with its drug mentions, gold relations (possibly none) and paragraph context."""

    doc_id: str
    sentence: str
    spans: tuple[DrugSpan, ...]
    relations: tuple[GoldRelation, ...]
    paragraph: str
    source: str | None = None

    @property
    def group_key(self) -> str:
        """Sentences of one paper share this key, so a split never puts one paper on both sides."""
        return self.source or self.doc_id


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise DataFormatError(
            "OV-2071", f"{where}: missing key {key!r}; expected DrugComb jsonl (doc_id, sentence, spans, rels)"
        )
    value = obj[key]
    if not isinstance(value, kind):
        raise DataFormatError("OV-2071", f"{where}: {key!r} has type {type(value).__name__}; fix the input file")
    return value


def parse_doc(obj: Any, where: str = "record") -> DrugCombDoc:
    """Validate one DrugComb JSON object; ``rels`` and ``paragraph`` may be absent (unlabelled input)."""
    if not isinstance(obj, dict):
        raise DataFormatError("OV-2071", f"{where}: expected a JSON object per line, got {type(obj).__name__}")
    sentence = _require(obj, "sentence", str, where)
    spans: list[DrugSpan] = []
    for raw in _require(obj, "spans", list, where):
        if not isinstance(raw, dict):
            raise DataFormatError("OV-2071", f"{where}: each span must be an object with span_id, text, start, end")
        span = DrugSpan(
            span_id=int(_require(raw, "span_id", int, where)),
            text=str(_require(raw, "text", str, where)),
            start=int(_require(raw, "start", int, where)),
            end=int(_require(raw, "end", int, where)),
        )
        if not 0 <= span.start < span.end <= len(sentence):
            raise DataFormatError(
                "OV-2071", f"{where}: span {span.span_id} [{span.start}, {span.end}) lies outside the sentence"
            )
        spans.append(span)
    known = {s.span_id for s in spans}
    if len(known) != len(spans):
        raise DataFormatError("OV-2071", f"{where}: duplicate span_id values; each drug span needs its own id")
    relations: list[GoldRelation] = []
    rels = obj.get("rels") or []
    if not isinstance(rels, list):
        raise DataFormatError("OV-2071", f"{where}: 'rels' has type {type(rels).__name__}; it must be a list")
    for raw in rels:
        if not isinstance(raw, dict):
            raise DataFormatError("OV-2071", f"{where}: each relation must be an object with class and spans")
        label = _require(raw, "class", str, where)
        ids = _require(raw, "spans", list, where)
        if label not in RELATION_LABELS:
            raise DataFormatError(
                "OV-2071", f"{where}: relation class {label!r} is not one of {', '.join(RELATION_LABELS)}"
            )
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise DataFormatError(
                "OV-2071", f"{where}: a relation's 'spans' must be a list of span_id integers, got {ids!r}"
            )
        if len(set(ids)) < 2 or not set(ids) <= known:
            raise DataFormatError("OV-2071", f"{where}: a relation needs at least two known span ids, got {ids}")
        relations.append(GoldRelation(tuple(sorted(int(i) for i in set(ids))), label))
    source = obj.get("source")
    return DrugCombDoc(
        doc_id=str(_require(obj, "doc_id", str, where)),
        sentence=sentence,
        spans=tuple(sorted(spans, key=lambda s: s.span_id)),
        relations=tuple(relations),
        paragraph=str(obj.get("paragraph") or sentence),
        source=source if isinstance(source, str) else None,
    )


def read_jsonl(path: Path) -> list[DrugCombDoc]:
    """Read a DrugComb jsonl file; blank lines are skipped, anything else must parse."""
    lines = jsonl_values(path, "OV-2070", "a DrugComb-format .jsonl file", line_code="OV-2071")
    docs = [parse_doc(obj, f"{path}:{number}") for number, obj in lines]
    if not docs:
        raise DataFormatError("OV-2070", f"{path} holds no records; pass a non-empty DrugComb .jsonl file")
    return docs


def is_dev(group_key: str, dev_fraction: float, salt: str = "drugcomb-dev") -> bool:
    """Deterministic split by a hash of the paper id, stable across machines and Python versions."""
    digest = hashlib.sha256(f"{salt}:{group_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction


def split_docs(
    docs: Iterable[DrugCombDoc], dev_fraction: float = 0.2, salt: str = "drugcomb-dev"
) -> tuple[list[DrugCombDoc], list[DrugCombDoc]]:
    """(train, dev) by paper so sentences of one abstract never straddle the split."""
    train: list[DrugCombDoc] = []
    dev: list[DrugCombDoc] = []
    for doc in docs:
        (dev if is_dev(doc.group_key, dev_fraction, salt) else train).append(doc)
    return train, dev


def docs_fingerprint(docs: Sequence[DrugCombDoc]) -> str:
    """A short hash of the doc ids, recorded in the model card so a split can be checked later."""
    return hashlib.sha256("\n".join(d.doc_id for d in docs).encode()).hexdigest()[:16]


def docs_from_note_records(records: Iterable[Any]) -> list[DrugCombDoc]:
    """DrugComb-style sentences from the synthetic cohort's notes (``combinations`` with ``drug_spans``).

    Every sentence that states a combination becomes one doc; its drug spans are those of its combinations
    (offsets rebased to the sentence) and the note text is the paragraph. Records without combinations
    give nothing; a combination without drug spans is skipped (it cannot be marked).
    """
    docs: list[DrugCombDoc] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataFormatError("OV-2071", f"note record {index}: expected a JSON object")
        text = record.get("text")
        if not isinstance(text, str):
            continue
        by_sentence: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for combo in record.get("combinations") or []:
            spans = combo.get("drug_spans")
            if not spans or combo.get("label") not in RELATION_LABELS:
                continue
            start, end = combo["sentence_span"]
            by_sentence.setdefault((int(start), int(end)), []).append(combo)
        for (start, end), combos in sorted(by_sentence.items()):
            ids: dict[tuple[int, int], int] = {}
            for combo in combos:
                for a, b in combo["drug_spans"]:
                    ids.setdefault((int(a) - start, int(b) - start), len(ids))
            sentence = text[start:end]
            spans = tuple(DrugSpan(i, sentence[a:b], a, b) for (a, b), i in sorted(ids.items(), key=lambda x: x[1]))
            relations = tuple(
                GoldRelation(
                    tuple(sorted(ids[(int(a) - start, int(b) - start)] for a, b in c["drug_spans"])), c["label"]
                )
                for c in combos
            )
            note_id = str(record.get("note_id", index))
            docs.append(DrugCombDoc(f"{note_id}:{start}", sentence, spans, relations, text, source=note_id))
    return docs
