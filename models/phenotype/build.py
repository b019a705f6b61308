"""Materialise the phenotype artifact: tagger ONNX (merged LoRA, parity-checked), tokenizer, model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.card import ModelCard, read_card
from models.encoder_export import build_encoder_dir, finish_model_dir
from models.fp16 import Fp16Mode
from models.phenotype.training import CHECK_TEXTS


def build_phenotype_dir(
    artifact: Path,
    out_dir: Path,
    *,
    int8: bool,
    threads: int = 0,
    export_extra: dict[str, Any] | None = None,
    base_dir: Path | None = None,
    fp16: Fp16Mode = "never",
) -> ModelCard:
    """int8 is decided on dev F1 at training time (the artifact card's ``export.int8_keep``)."""
    report, _task = build_encoder_dir(
        artifact,
        out_dir,
        CHECK_TEXTS,
        hidden_output=True,  # token retrieval (``models.token_retrieval``) reads them
        int8=int8,
        threads=threads,
        int8_min_agreement=0.0,
        base_dir=base_dir,
        fp16=fp16,
    )
    card = read_card(artifact)
    exported = {**card.export, **report.as_record(), **(export_extra or {})}
    return finish_model_dir(out_dir, card.model_copy(update={"export": exported, "files": {}}))
