"""Materialise the recommender: base + committed LoRA adapter -> merged model -> ONNX with past key values.

The directory gets ``model.onnx`` (fp32, optimum ``text-generation-with-past``), the tokenizer files,
``config.json``, ``recommender.json`` (prompt format + threshold) and whatever extra files the caller
passes (e.g. the baselines' statistics). Checks, recorded in the export section of the model card:

- parity: P(yes) of the merged torch model (one full pass per candidate) against the ONNX model with the
  shared-prefix cache, on fixed check prompts; the export fails above ``PARITY_MAX``.
- int8: dynamic int8 is kept as ``model_int8.onnx`` only when P(yes) moves by at most ``INT8_MAX_DRIFT``
  and no check decision flips at the threshold (decoders drift; SmolLM2 usually fails, so CPU stays fp32).
- fp16: ``model_fp16.onnx`` is written only when a CUDA session is really available to check it.

Built in a sibling staging folder and renamed into place, so a crash never leaves a half model.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ModelLoadError, TrainingError
from models.recommender.artifact import SETTINGS_FILE, RecommenderSettings, read_settings, write_settings
from models.recommender.base import BaseModel, load_base, save_tokenizer
from models.recommender.prompt import PatientSummary
from models.recommender.tokens import answer_ids, encode_prompt

PARITY_MAX = 1e-3
INT8_MAX_DRIFT = 0.02
FP16_MAX_DRIFT = 0.01

CHECK_PATIENTS: tuple[PatientSummary, ...] = (
    PatientSummary(
        age=63,
        sex="female",
        conditions=("non-small cell lung cancer", "hypertension"),
        previous_medications=("carboplatin", "pemetrexed", "pembrolizumab", "ondansetron"),
        allergies=("penicillin",),
        history="Cycle 2 of carboplatin/pemetrexed/pembrolizumab. Grade 1 nausea, controlled.",
    ),
    PatientSummary(
        age=71,
        sex="male",
        conditions=("prostate cancer", "type 2 diabetes"),
        previous_medications=("leuprolide", "metformin"),
        history="On androgen deprivation; pelvic radiotherapy week 3, grade 2 urinary frequency.",
    ),
    PatientSummary(age=45, sex="female", conditions=("essential hypertension",)),
)
CHECK_CANDIDATES: tuple[str, ...] = (
    "ondansetron",
    "pembrolizumab",
    "tamsulosin",
    "lisinopril",
    "granisetron",
    "metformin",
)


@dataclass
class ExportReport:
    opset: int = 0
    parity_max_abs_diff: float = float("nan")
    parity_cached_vs_full: float = float("nan")
    parity_prompts: int = 0
    int8: bool = False
    int8_max_drift: float | None = None
    fp16: bool = False
    fp16_note: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {
            "tool": "optimum.exporters.onnx.main_export",
            "task": "text-generation-with-past",
            "opset": self.opset,
            "parity": {
                "metric": "max |P(yes) torch full pass - P(yes) ONNX shared-prefix cache|",
                "max_abs_diff": self.parity_max_abs_diff,
                "onnx_cached_vs_full": self.parity_cached_vs_full,
                "limit": PARITY_MAX,
                "prompts": self.parity_prompts,
            },
            "quantization": {
                "int8_dynamic": self.int8,
                "int8_max_p_yes_drift": self.int8_max_drift,
                "int8_max_allowed": INT8_MAX_DRIFT,
                "fp16": self.fp16,
                "fp16_note": self.fp16_note,
            },
            "seconds": self.seconds,
            **self.extra,
        }


def merged_model(artifact_dir: Path, base: BaseModel) -> Any:
    """The adapter applied to ``base`` and merged into plain weights (eval mode)."""
    from peft import PeftModel

    merged = PeftModel.from_pretrained(base.model, str(artifact_dir)).merge_and_unload()
    merged.eval()
    return merged


def _opset(onnx_path: Path) -> int:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))


def _onnx_scores(model_dir: Path, onnx_name: str, settings: RecommenderSettings, providers: Sequence[str]) -> Any:
    import numpy as np
    from tokenizers import Tokenizer

    from models.recommender.scorer import OnnxYesNoScorer
    from models.runtime import load_session

    loaded = load_session(model_dir / onnx_name, providers)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    yes_id, no_id = answer_ids(tokenizer, settings.prompt)
    scorer = OnnxYesNoScorer(loaded, yes_id, no_id, no_id)
    cached, full = [], []
    for patient in CHECK_PATIENTS:
        prefix, suffixes = encode_prompt(tokenizer, settings.prompt, patient, CHECK_CANDIDATES)
        cached.append(scorer.score_cached(prefix, suffixes))
        full.append(scorer.score_full(prefix, suffixes))
    return np.concatenate(cached), np.concatenate(full), loaded.provider


def _torch_scores(model: Any, base: BaseModel, settings: RecommenderSettings) -> Any:
    import numpy as np
    import torch

    from models.recommender.torch_scoring import margins_full

    yes_id, no_id = answer_ids(base.backend, settings.prompt)
    out = []
    with torch.no_grad():
        for patient in CHECK_PATIENTS:
            prefix, suffixes = encode_prompt(base.backend, settings.prompt, patient, CHECK_CANDIDATES)
            out.append(torch.sigmoid(margins_full(model, prefix, suffixes, yes_id, no_id).double()).numpy())
    return np.concatenate(out)


def load_source(artifact_dir: Path, base_source: str | None = None) -> tuple[Any, BaseModel, RecommenderSettings]:
    """The merged torch model, its base and settings, from an adapter artifact or a whole causal-LM folder.

    An adapter folder (adapter_config.json) is merged into its base (``base_source``, else the one
    recommender.json or adapter_config.json names); a plain Hugging Face folder (config.json) is used as is.
    Without recommender.json the default prompt and a 0.5 threshold apply.
    """
    has_settings = (artifact_dir / SETTINGS_FILE).is_file()
    if (artifact_dir / "adapter_config.json").is_file():
        named = json.loads((artifact_dir / "adapter_config.json").read_text(encoding="utf-8"))
        settings = (
            read_settings(artifact_dir)
            if has_settings
            else RecommenderSettings(threshold=0.5, base=str(named.get("base_model_name_or_path") or "smollm2"))
        )
        base = load_base(base_source or settings.base)
        return merged_model(artifact_dir, base), base, settings
    if (artifact_dir / "config.json").is_file():
        base = load_base(artifact_dir)
        settings = read_settings(artifact_dir) if has_settings else RecommenderSettings(0.5, str(artifact_dir))
        return base.model, base, settings
    raise ModelLoadError(
        "OV-2017",
        f"{artifact_dir} is neither a recommender adapter (adapter_config.json) nor a Hugging Face "
        "causal-LM folder (config.json); pass one of them",
    )


def build_recommender_dir(
    artifact_dir: Path,
    out_dir: Path,
    *,
    base_source: str | None = None,
    extra_files: Sequence[Path] = (),
    int8: bool = True,
    threads: int = 0,
) -> tuple[ExportReport, RecommenderSettings]:
    """Merge, export, check; leaves ``out_dir`` without a card (the caller writes it last)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    model, base, settings = load_source(artifact_dir, base_source)
    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    hf_dir = staging / ".hf"
    try:
        model.save_pretrained(str(hf_dir))
        save_tokenizer(base.tokenizer, hf_dir)
        write_settings(staging, settings)
        report = _export_and_check(hf_dir, staging, model, base, settings, int8)
        for extra in extra_files:
            shutil.copy2(extra, staging / extra.name)
        report.seconds = round(time.perf_counter() - started, 1)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return report, settings


def _export_and_check(
    hf_dir: Path, staging: Path, model: Any, base: BaseModel, settings: RecommenderSettings, int8: bool
) -> ExportReport:
    import numpy as np
    from optimum.exporters.onnx import main_export

    from models.runtime import CPU

    main_export(str(hf_dir), str(staging), task="text-generation-with-past", device="cpu", do_validation=False)
    shutil.rmtree(hf_dir)
    big = staging / "tokenizer.model"
    if big.is_file() and big.stat().st_size > 10_000_000:
        big.unlink()
    report = ExportReport(opset=_opset(staging / "model.onnx"))
    expected = _torch_scores(model, base, settings)
    cached, full, _ = _onnx_scores(staging, "model.onnx", settings, [CPU])
    report.parity_max_abs_diff = float(np.abs(expected - cached).max())
    report.parity_cached_vs_full = float(np.abs(cached - full).max())
    report.parity_prompts = len(expected)
    if not report.parity_max_abs_diff < PARITY_MAX:
        raise TrainingError(
            "OV-2056",
            f"ONNX P(yes) differs from torch by {report.parity_max_abs_diff:.2e} (limit {PARITY_MAX:.0e}); "
            "do not use this export; report the torch / optimum / onnxruntime versions",
        )
    if int8:
        _try_int8(staging, cached, settings, report)
    _try_fp16(staging, cached, settings, report)
    return report


def _try_int8(staging: Path, reference: Any, settings: RecommenderSettings, report: ExportReport) -> None:
    import numpy as np

    from models.encoder_export import quantize_int8
    from models.runtime import CPU

    target = staging / "model_int8.onnx"
    quantize_int8(staging / "model.onnx", target)
    scores, _, _ = _onnx_scores(staging, target.name, settings, [CPU])
    drift = float(np.abs(scores - reference).max())
    threshold = settings.threshold
    flips = bool(((scores >= threshold) != (reference >= threshold)).any())
    report.int8_max_drift = round(drift, 5)
    report.int8 = drift <= INT8_MAX_DRIFT and not flips
    if not report.int8:
        target.unlink()


def _try_fp16(staging: Path, reference: Any, settings: RecommenderSettings, report: ExportReport) -> None:
    import numpy as np

    from models.errors import ProviderError
    from models.runtime import CPU, CUDA, load_session

    try:
        # onnxruntime-gpu lists CUDA even without a GPU; only a created session tells the truth.
        load_session(staging / "model.onnx", [CUDA, CPU], require=CUDA)
    except ProviderError:
        report.fp16_note = "skipped: no CUDA device at build time to check it; GPU hosts run fp32"
        return
    from models.fp16 import FP16_FILE, make_fp16

    target = staging / FP16_FILE
    make_fp16(staging / "model.onnx", target)
    scores, _, _ = _onnx_scores(staging, target.name, settings, [CUDA])
    drift = float(np.abs(scores - reference).max())
    report.fp16 = drift <= FP16_MAX_DRIFT
    report.fp16_note = f"max P(yes) drift {drift:.4f} on CUDA"
    if not report.fp16:
        target.unlink()
