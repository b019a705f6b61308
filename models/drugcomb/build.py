"""Materialise the committed drug-combination artifact into a runnable ONNX model directory with its card."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from models.card import ModelCard, read_card
from models.drugcomb.lexicon import DRUGS_FILE
from models.encoder_export import ExportReport, Int8Gate, build_encoder_dir, finish_model_dir
from models.errors import ModelLoadError

# Parity inputs in the classifier's own format: candidate drugs marked << >>, others plain.
CHECK_TEXTS: tuple[str, ...] = (
    "The combination of << cisplatin >> and << paclitaxel >> produced a partial response in 12 of 30 patients.",
    "<< Gemcitabine >> plus << carboplatin >> was given every 21 days, and docetaxel was used as second line.",
    "Co-administration of << rifampin >> markedly reduced << midazolam >> exposure and its sedative effect.",
    "Restaging CT shows progression despite << fluorouracil >>, << leucovorin >> and << oxaliplatin >>.",
)


def build_drugcomb_dir(
    artifact_dir: Path,
    out_dir: Path,
    *,
    int8: bool,
    int8_gate: Int8Gate | None = None,
    export_extra: dict[str, Any] | None = None,
    threads: int = 0,
) -> ModelCard:
    """Merge + export + parity-check, add the drug name list, then write the card that hashes it all."""
    if not (artifact_dir / DRUGS_FILE).is_file():
        raise ModelLoadError(
            "OV-2018", f"{artifact_dir / DRUGS_FILE} is missing; retrain with `oncovigil train drugcomb`"
        )
    report, _ = build_encoder_dir(artifact_dir, out_dir, CHECK_TEXTS, int8=int8, int8_gate=int8_gate, threads=threads)
    shutil.copy2(artifact_dir / DRUGS_FILE, out_dir / DRUGS_FILE)
    return finish_model_dir(out_dir, model_card(artifact_dir, report, export_extra))


def model_card(artifact_dir: Path, report: ExportReport, export_extra: dict[str, Any] | None) -> ModelCard:
    artifact = read_card(artifact_dir)
    export = {**artifact.export, **report.as_record(), **(export_extra or {})}
    return artifact.model_copy(update={"export": export, "files": {}})
