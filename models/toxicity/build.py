"""Materialise the committed toxicity artifact into a runnable ONNX model directory with its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.backbone import minilm_dir
from models.card import ModelCard, read_card, verify_dir, write_card
from models.drugcomb.pooled import InputRow
from models.drugcomb.pooled_build import build_pooled_dir
from models.fp16 import Fp16Mode

# Parity inputs: short and long, present / denied / graded phrasings (no real patient text).
CHECK_TEXTS: tuple[str, ...] = (
    "Radiation oncology weekly visit. GU: reports grade 2 urinary frequency. Denies hematuria.",
    "Symptom review: denies diarrhea, rectal bleeding or dysuria. Fatigue (grade 1) persists.",
    "Treatment: completed 20 of 28 fractions to the pelvis. GI: loose stools, CTCAE grade 2; loperamide prescribed.",
    "No new complaints today.",
)


def build_toxicity_dir(
    artifact_dir: Path,
    out_dir: Path,
    *,
    int8: bool,
    export_extra: dict[str, Any] | None = None,
    threads: int = 0,
    base_dir: Path | None = None,
    fp16: Fp16Mode = "never",
) -> ModelCard:
    """Merge + export + parity-check, then write the card (the artifact's plus what this export did)."""
    verify_dir(artifact_dir)
    rows = [InputRow(t) for t in CHECK_TEXTS]
    base = base_dir or minilm_dir()
    report = build_pooled_dir(artifact_dir, out_dir, base, rows, int8=int8, threads=threads, fp16=fp16)
    artifact = read_card(artifact_dir)
    export = {**artifact.export, **report.as_record(), **(export_extra or {})}
    return write_card(out_dir, artifact.model_copy(update={"export": export, "files": {}}))
