"""Training examples for the ADE tagger and the model-directory build.

Examples are sentences with DRUG and AE character spans, from ADE-Corpus-V2 and from synthetic notes
(plain records: ``text`` plus ``ades`` with ``drug_span`` / ``event_span`` as in the cohort truth).
Note sentences are cut with the same splitter the extractor uses at run time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.ade.corpus import AdeSentence
from models.ade.ctcae import TERMS_FILE, VECTORS_FILE, CtcaeTerm, write_terms
from models.ade.extractor import AE, DRUG, NAME
from models.card import ModelCard, read_card
from models.encoder_export import (
    EMBEDDER_FILE,
    EMBEDDER_TOKENIZER_FILE,
    ExportReport,
    Int8Gate,
    build_encoder_dir,
    export_embedder,
    finish_model_dir,
)
from models.encoder_infer import EncoderTokenizer, TokenClassifierRunner
from models.encoder_train import SpanExample
from models.fp16 import Fp16Mode
from models.runtime import CPU, load_session, split_sentences_with_offsets

ENTITY_TYPES: tuple[str, ...] = (DRUG, AE)
CHECK_TEXTS: tuple[str, ...] = (
    "Grade 3 neutropenia likely secondary to docetaxel.",
    "On cisplatin, denies nausea or vomiting.",
    "Intravenous azithromycin-induced ototoxicity.",
    "We report a case of severe hepatotoxicity after methotrexate.",
    "Continue ondansetron as needed for nausea.",
    "Restaging CT shows a partial response.",
)


def corpus_examples(sentences: Sequence[AdeSentence]) -> list[SpanExample]:
    """Drug spans first: where a drug sits inside an event ("digoxin toxicity") its tokens stay DRUG."""
    examples = []
    for s in sentences:
        spans = [(a, b, DRUG) for a, b in sorted(s.drugs)] + [(a, b, AE) for a, b in sorted(s.events)]
        examples.append(SpanExample(s.text, tuple(spans)))
    return examples


def note_examples(records: Sequence[dict[str, Any]]) -> list[SpanExample]:
    """One example per distinct sentence of the notes, with the truth's drug and event spans inside it."""
    examples: list[SpanExample] = []
    seen: set[tuple[str, tuple[tuple[int, int, str], ...]]] = set()
    for record in records:
        text: str = record["text"]
        marks: list[tuple[int, int, str]] = []
        for ade in record.get("ades", []):
            marks.append((int(ade["drug_span"][0]), int(ade["drug_span"][1]), DRUG))
            marks.append((int(ade["event_span"][0]), int(ade["event_span"][1]), AE))
        for start, end in split_sentences_with_offsets(text):
            inside = tuple(sorted({(a - start, b - start, kind) for a, b, kind in marks if start <= a and b <= end}))
            key = (text[start:end], inside)
            if key not in seen:
                seen.add(key)
                examples.append(SpanExample(text[start:end], inside))
    return examples


def choose(items: Sequence[Any], count: int, seed: int) -> list[Any]:
    """A fixed-seed sample (all items when ``count`` is larger)."""
    if count >= len(items):
        return list(items)
    return random.Random(seed).sample(list(items), count)


def build_ade_dir(
    artifact_dir: Path,
    out_dir: Path,
    terms: Sequence[CtcaeTerm],
    *,
    int8: bool,
    int8_gate: Int8Gate | None = None,
    export_extra: dict[str, Any] | None = None,
    threads: int = 0,
    check_texts: Sequence[str] = CHECK_TEXTS,
    int8_min_agreement: float = 0.0,
    base_dir: Path | None = None,
    fp16: Fp16Mode = "never",
) -> ModelCard:
    """Materialise the ADE artifact: tagger ONNX, term embedder ONNX, CTCAE terms and vectors, model card.

    int8 is decided on dev pair F1 at training time (recorded in the artifact card); the token agreement
    on ``check_texts`` is recorded, and gates only when ``int8_min_agreement`` is above 0. ``base_dir`` is the
    backbone the adapter was trained on (default all-MiniLM-L6-v2); the CTCAE term embedder is always MiniLM.
    """
    report, task = build_encoder_dir(
        artifact_dir,
        out_dir,
        check_texts,
        hidden_output=True,  # token retrieval (``models.token_retrieval``) reads them
        int8=int8,
        int8_gate=int8_gate,
        threads=threads,
        int8_min_agreement=int8_min_agreement,
        base_dir=base_dir,
        fp16=fp16,
    )
    write_terms(out_dir / TERMS_FILE, terms)
    embedder_record = export_embedder(out_dir / EMBEDDER_FILE, [*CHECK_TEXTS, *(t.term for t in terms[:64])])
    embedder = TokenClassifierRunner(
        load_session(out_dir / EMBEDDER_FILE, [CPU], threads),
        EncoderTokenizer(out_dir / EMBEDDER_TOKENIZER_FILE, int(task["max_len"])),
    )
    np.save(out_dir / VECTORS_FILE, embedder.embed([t.term for t in terms]))
    extra = {**(export_extra or {}), "ctcae_embedder": embedder_record}
    return finish_model_dir(out_dir, model_card(artifact_dir, report, extra))


def model_card(artifact_dir: Path, report: ExportReport, export_extra: dict[str, Any] | None) -> ModelCard:
    """The model directory's card: the artifact's card plus what this export did."""
    artifact = read_card(artifact_dir)
    export = {**artifact.export, **report.as_record(), **(export_extra or {})}
    return artifact.model_copy(update={"name": NAME, "export": export, "files": {}})
