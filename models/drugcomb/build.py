"""Materialise the committed drug-combination artifact into a runnable ONNX model directory with its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.backbone import minilm_dir
from models.card import ModelCard, read_card, verify_dir, write_card
from models.drugcomb.lexicon import DRUGS_FILE
from models.drugcomb.pooled import InputRow
from models.drugcomb.pooled_build import build_pooled_dir
from models.errors import ModelLoadError
from models.fp16 import Fp16Mode

# Parity inputs in the classifier's own format: candidate drugs marked << >> (the focus), other drugs plain.
_SENTENCES: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("The combination of << cisplatin >> and << paclitaxel >> produced a partial response in 12 of 30.", None, ()),
    (
        "<< Gemcitabine >> plus << carboplatin >> was given every 21 days; docetaxel was second line.",
        "Context.",
        ("docetaxel",),
    ),
    ("Co-administration of << rifampin >> markedly reduced << midazolam >> exposure and its sedation.", None, ()),
    (
        "Restaging shows progression despite << fluorouracil >>, << leucovorin >> and oxaliplatin.",
        None,
        ("oxaliplatin",),
    ),
)


def check_rows() -> list[InputRow]:
    rows = []
    for text, pair, others in _SENTENCES:
        focus, at = [], 0
        while (start := text.find("<< ", at)) >= 0:
            end = text.index(" >>", start)
            focus.append((start + 3, end))
            at = end
        other = tuple((text.index(name), text.index(name) + len(name)) for name in others)
        rows.append(InputRow(text, pair, tuple(focus), other))
    return rows


def build_drugcomb_dir(
    artifact_dir: Path,
    out_dir: Path,
    *,
    int8: bool,
    export_extra: dict[str, Any] | None = None,
    threads: int = 0,
    base_dir: Path | None = None,
    fp16: Fp16Mode = "never",
) -> ModelCard:
    """Merge + export + parity-check, add the drug name list, then write the card that hashes it all."""
    verify_dir(artifact_dir)
    if not (artifact_dir / DRUGS_FILE).is_file():
        raise ModelLoadError(
            "OV-2018", f"{artifact_dir / DRUGS_FILE} is missing; retrain with `oncovigil train drugcomb`"
        )
    report = build_pooled_dir(
        artifact_dir,
        out_dir,
        base_dir or minilm_dir(),
        check_rows(),
        int8=int8,
        extra_files=(DRUGS_FILE,),
        threads=threads,
        fp16=fp16,
    )
    artifact = read_card(artifact_dir)
    export = {**artifact.export, **report.as_record(), **(export_extra or {})}
    return write_card(out_dir, artifact.model_copy(update={"export": export, "files": {}}))
