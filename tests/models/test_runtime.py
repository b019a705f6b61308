"""Runtime: the provider is what the session really took; batching and sentence windows keep offsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from models import ModelLoadError, ProviderError, bucket_by_length, load_session, split_sentences_with_offsets
from models.runtime import CPU, CUDA, load_model_dir_session, pick_variant, window_spans


def _tiny_graph(path: Path) -> Path:
    """y = x @ W: a real ONNX file without torch."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [1, 0, 0, 1, 1, 1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_provider_is_what_the_session_took(tmp_path: Path) -> None:
    loaded = load_session(_tiny_graph(tmp_path / "model.onnx"), (CUDA, CPU), threads=1)
    taken = loaded.session.get_providers()
    assert loaded.provider == taken[0]
    if CUDA not in taken:  # onnxruntime-gpu lists CUDA as available even without a GPU
        assert loaded.provider == CPU
        assert not loaded.on_gpu
    out = loaded.run({"x": np.array([[1, 2, 3]], dtype=np.float32), "ignored": np.zeros(1)})
    np.testing.assert_allclose(out[0], [[4.0, 5.0]])


def test_required_gpu_fails_loudly_without_one(tmp_path: Path) -> None:
    path = _tiny_graph(tmp_path / "model.onnx")
    if CUDA in load_session(path, (CUDA, CPU)).session.get_providers():
        pytest.skip("this machine really runs CUDA")
    with pytest.raises(ProviderError, match="OV-2033"):
        load_session(path, (CUDA, CPU), require=CUDA)


def test_unknown_provider_only_is_refused(tmp_path: Path) -> None:
    path = _tiny_graph(tmp_path / "model.onnx")
    assert "NoSuchExecutionProvider" not in ort.get_available_providers()
    with pytest.raises(ProviderError, match="OV-2031"):
        load_session(path, ("NoSuchExecutionProvider",))


def test_missing_model_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"OV-2001.*models build"):
        load_session(tmp_path / "absent.onnx")


def test_variant_choice_follows_the_real_provider(tmp_path: Path) -> None:
    _tiny_graph(tmp_path / "model.onnx")
    _tiny_graph(tmp_path / "model_int8.onnx")
    _tiny_graph(tmp_path / "model_fp16.onnx")
    assert pick_variant(tmp_path, on_gpu=False, allow_int8=True).name == "model_int8.onnx"
    assert pick_variant(tmp_path, on_gpu=False, allow_int8=False).name == "model.onnx"
    assert pick_variant(tmp_path, on_gpu=True, allow_int8=True).name == "model_fp16.onnx"
    loaded = load_model_dir_session(tmp_path, (CUDA, CPU), allow_int8=True)
    expected = "model_fp16.onnx" if loaded.on_gpu else "model_int8.onnx"
    assert loaded.path.name == expected


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=60), st.integers(1, 8), st.integers(64, 1024))
def test_buckets_cover_every_item_once_within_limits(lengths: list[int], max_batch: int, max_tokens: int) -> None:
    batches = bucket_by_length(lengths, lambda n: n, max_batch, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_batch
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= max_tokens


def test_buckets_group_similar_lengths() -> None:
    lengths = [5, 100, 6, 101, 7, 102]
    batches = bucket_by_length(lengths, lambda n: n, max_batch=3, max_tokens=10_000)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[5, 6, 7], [100, 101, 102]]


def test_sentences_keep_offsets_and_skip_abbreviations() -> None:
    text = "Dr. Smith saw the pt. today.  Grade 3 neutropenia after docetaxel!\nNo nausea. 5 mg given e.g. daily."
    spans = split_sentences_with_offsets(text)
    pieces = [text[a:b] for a, b in spans]
    assert pieces == [
        "Dr. Smith saw the pt. today.",
        "Grade 3 neutropenia after docetaxel!",
        "No nausea.",
        "5 mg given e.g. daily.",
    ]


def test_long_sentences_are_cut_into_windows_with_offsets() -> None:
    text = "Short one. " + " ".join(f"word{i}" for i in range(50)) + ". End."
    count = len  # one "token" per character keeps the arithmetic visible
    windows = window_spans(text, lambda s: count(s.split()), max_tokens=12, pack=False)
    # "Short one. word0" is no boundary (lower case follows), so the first sentence runs to "word49." and is
    # cut every 12 words; only "End." is a sentence of its own.
    cut = [" ".join(f"word{i}" for i in range(first, first + 12)) for first in (10, 22, 34)]
    assert [text[a:b] for a, b in windows] == [
        "Short one. " + " ".join(f"word{i}" for i in range(10)),
        *cut,
        "word46 word47 word48 word49.",
        "End.",
    ]
    assert windows == [(0, 70), (71, 154), (155, 238), (239, 322), (323, 351), (352, 356)]
    packed = window_spans(text, lambda s: count(s.split()), max_tokens=12, pack=True)
    # Only the 4-word tail and "End." fit one window together; full 12-word pieces take no neighbour.
    assert packed == [*windows[:4], (323, 356)]
    assert text[packed[-1][0] : packed[-1][1]] == "word46 word47 word48 word49. End."


@pytest.mark.parametrize("spin", [True, False])
def test_idle_threads_sleep_only_when_asked(tmp_path: Path, spin: bool) -> None:
    loaded = load_session(_tiny_graph(tmp_path / "model.onnx"), (CPU,), threads=2, spin=spin)
    options = loaded.session.get_session_options()
    key = "session.intra_op.allow_spinning"
    if spin:  # left unset: onnxruntime's default, which spins
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry(key)
    else:
        assert options.get_session_config_entry(key) == "0"
    out = loaded.run({"x": np.array([[1, 2, 3]], dtype=np.float32)})
    np.testing.assert_allclose(out[0], [[4.0, 5.0]])
