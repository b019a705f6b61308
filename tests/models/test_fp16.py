"""The fp16 variant: written only when asked and checked, removed when its labels drift, served only on CUDA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.fp16 import FP16_FILE, Agreement, Fp16Mode, make_fp16, try_fp16
from models.runtime import CPU, load_session, pick_variant

INPUTS = np.random.default_rng(3).normal(size=(64, 16)).astype(np.float32)


def _classifier(path: Path) -> Path:
    """A 16 -> 4 linear classifier (float32 weights), the shape of a model head."""
    rng = np.random.default_rng(7)
    weight = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])],
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _labels(path: Path, providers: Sequence[str]) -> np.ndarray:
    labels: np.ndarray = np.asarray(load_session(path, providers).run({"x": INPUTS}, ["logits"])[0]).argmax(-1)
    return labels


def _agreement_with(fp32: Path) -> Agreement:
    def agreement(candidate: Path, providers: Sequence[str]) -> float:
        return float((_labels(candidate, providers) == _labels(fp32, [CPU])).mean())

    return agreement


def test_conversion_halves_the_weights_and_keeps_float_io(tmp_path: Path) -> None:
    fp32 = _classifier(tmp_path / "model.onnx")
    make_fp16(fp32, tmp_path / FP16_FILE)
    converted = onnx.load(str(tmp_path / FP16_FILE))
    assert {i.data_type for i in converted.graph.initializer} == {TensorProto.FLOAT16}
    assert converted.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    got = load_session(tmp_path / FP16_FILE, [CPU]).run({"x": INPUTS}, ["logits"])[0]
    want = load_session(fp32, [CPU]).run({"x": INPUTS}, ["logits"])[0]
    assert got.dtype == np.float32 and 0 < np.abs(got - want).max() < 1e-2  # rounded, not lost


def test_always_builds_and_checks_it_on_cpu_when_there_is_no_cuda(tmp_path: Path) -> None:
    fp32 = _classifier(tmp_path / "model.onnx")
    record = try_fp16(fp32, "always", _agreement_with(fp32), cuda=False)
    assert record.kept and record.agreement == 1.0 and record.checked_on == CPU
    assert (tmp_path / FP16_FILE).is_file()
    assert record.as_record()["file"] == FP16_FILE
    # served on GPU hosts only: a CPU host keeps fp32 (or int8)
    assert pick_variant(tmp_path, on_gpu=True, allow_int8=True).name == FP16_FILE
    assert pick_variant(tmp_path, on_gpu=False, allow_int8=True).name == "model.onnx"


def test_a_variant_whose_labels_drift_is_removed(tmp_path: Path) -> None:
    fp32 = _classifier(tmp_path / "model.onnx")
    record = try_fp16(fp32, "always", _agreement_with(fp32), min_agreement=1.01, cuda=False)
    assert not record.kept and record.agreement == 1.0
    assert "removed" in record.note and not (tmp_path / FP16_FILE).exists()
    assert pick_variant(tmp_path, on_gpu=True, allow_int8=True).name == "model.onnx"


@pytest.mark.parametrize(("mode", "note"), [("auto", "no CUDA device"), ("never", "never")])
def test_auto_without_cuda_and_never_write_nothing(tmp_path: Path, mode: Fp16Mode, note: str) -> None:
    fp32 = _classifier(tmp_path / "model.onnx")

    def must_not_run(candidate: Path, providers: Sequence[str]) -> float:
        raise AssertionError("no check without a variant")

    record = try_fp16(fp32, mode, must_not_run, cuda=False)
    assert not record.kept and note in record.note and record.checked_on is None
    assert not (tmp_path / FP16_FILE).exists()
