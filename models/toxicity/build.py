"""Materialise the committed toxicity artifact into a runnable ONNX model directory with its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.card import ModelCard, read_card
from models.encoder_export import ExportReport, Int8Gate, build_encoder_dir, finish_model_dir

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
    int8_gate: Int8Gate | None = None,
    export_extra: dict[str, Any] | None = None,
    threads: int = 0,
) -> ModelCard:
    """Merge + export + parity-check (``build_encoder_dir``), then write the card that hashes it all."""
    report, _ = build_encoder_dir(artifact_dir, out_dir, CHECK_TEXTS, int8=int8, int8_gate=int8_gate, threads=threads)
    return finish_model_dir(out_dir, model_card(artifact_dir, report, export_extra))


def model_card(artifact_dir: Path, report: ExportReport, export_extra: dict[str, Any] | None) -> ModelCard:
    """The artifact's card (data, hyperparameters, dev metrics) plus what this export did."""
    artifact = read_card(artifact_dir)
    export = {**artifact.export, **report.as_record(), **(export_extra or {})}
    return artifact.model_copy(update={"export": export, "files": {}})
