"""Shared-prefix scoring equals one full pass per candidate, in torch and on a real ONNX session."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recommender_tiny import build_tiny_base

from models.errors import ModelLoadError
from models.recommender.prompt import PatientSummary, PromptFormat
from models.recommender.scorer import OnnxYesNoScorer
from models.recommender.tokens import answer_ids, encode_prompt
from models.runtime import CPU, load_session

PATIENT = PatientSummary(
    age=60,
    sex="female",
    conditions=("lung cancer", "hypertension"),
    previous_medications=("cisplatin", "pemetrexed"),
    allergies=("penicillin",),
    history="Cycle 2, grade 1 nausea.",
)
# Different lengths on purpose: right padding must not change any score.
CANDIDATES = ["ondansetron", "pembrolizumab", "granisetron", "lisinopril and metformin extended release", "x"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from optimum.exporters.onnx import main_export

    from models.recommender.base import load_base

    root = tmp_path_factory.mktemp("tiny-recommender")
    base = load_base(build_tiny_base(root / "base"))
    main_export(
        str(root / "base"),
        str(root / "onnx"),
        task="text-generation-with-past",
        device="cpu",
        do_validation=False,
    )
    fmt = PromptFormat()
    yes_id, no_id = answer_ids(base.backend, fmt)
    prefix, suffixes = encode_prompt(base.backend, fmt, PATIENT, CANDIDATES)
    return {
        "base": base,
        "onnx": root / "onnx" / "model.onnx",
        "ids": (yes_id, no_id),
        "prefix": prefix,
        "suffixes": suffixes,
    }


def _torch_full(tiny: dict[str, Any]) -> np.ndarray:
    import torch

    from models.recommender.torch_scoring import margins_full

    yes_id, no_id = tiny["ids"]
    with torch.no_grad():
        margins = margins_full(tiny["base"].model, tiny["prefix"], tiny["suffixes"], yes_id, no_id)
    return torch.sigmoid(margins.double()).numpy()


def test_suffix_lengths_differ_and_scores_spread(tiny: dict[str, Any]) -> None:
    lengths = {len(s) for s in tiny["suffixes"]}
    assert len(lengths) >= 3
    probs = _torch_full(tiny)
    # Large random weights: the scores are far apart, so the equalities below are not trivially 0.5 == 0.5.
    assert probs.max() - probs.min() > 0.3


def test_torch_cached_equals_full_pass(tiny: dict[str, Any]) -> None:
    import torch

    from models.recommender.torch_scoring import margins_cached

    yes_id, no_id = tiny["ids"]
    with torch.no_grad():
        cached = torch.sigmoid(
            margins_cached(tiny["base"].model, tiny["prefix"], tiny["suffixes"], yes_id, no_id, no_id).double()
        ).numpy()
    assert np.abs(cached - _torch_full(tiny)).max() < 1e-4


@pytest.mark.parametrize("max_batch", [1, 2, 16])
def test_onnx_cached_equals_full_and_torch(tiny: dict[str, Any], max_batch: int) -> None:
    yes_id, no_id = tiny["ids"]
    scorer = OnnxYesNoScorer(load_session(tiny["onnx"], [CPU]), yes_id, no_id, pad_id=0, max_batch=max_batch)
    cached = scorer.score_cached(tiny["prefix"], tiny["suffixes"])
    full = scorer.score_full(tiny["prefix"], tiny["suffixes"])
    assert cached.shape == (len(CANDIDATES),)
    assert np.abs(cached - full).max() < 1e-4
    assert np.abs(cached - _torch_full(tiny)).max() < 1e-4


def test_wrong_positions_would_be_caught(tiny: dict[str, Any]) -> None:
    """Control: suffix positions restarting at 0 change the scores, so the equality tests have power."""
    yes_id, no_id = tiny["ids"]
    loaded = load_session(tiny["onnx"], [CPU])
    prefix, suffix = tiny["prefix"], tiny["suffixes"][0]
    empty = np.zeros((1, 2, 0, 16), dtype=np.float32)  # tiny Llama: 2 KV heads, head_dim 64 / 4
    pasts = {f"past_key_values.{i}.{k}": empty for i in range(2) for k in ("key", "value")}
    ids = np.asarray([prefix], dtype=np.int64)
    out = loaded.session.run(
        None,
        {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "position_ids": np.arange(len(prefix))[None, :],
            **pasts,
        },
    )
    present = dict(zip(loaded.output_names, out, strict=True))
    sids = np.asarray([suffix], dtype=np.int64)
    feeds = {
        "input_ids": sids,
        "attention_mask": np.ones((1, len(prefix) + len(suffix)), dtype=np.int64),
        "position_ids": np.arange(len(suffix))[None, :],
    }
    for i in range(2):
        for k in ("key", "value"):
            feeds[f"past_key_values.{i}.{k}"] = present[f"present.{i}.{k}"]
    logits = loaded.session.run(["logits"], feeds)[0][0, -1]
    wrong = 1 / (1 + np.exp(-(float(logits[yes_id]) - float(logits[no_id]))))
    right = OnnxYesNoScorer(loaded, yes_id, no_id, pad_id=0).score_cached(prefix, [suffix])[0]
    assert abs(right - wrong) > 1e-3


def test_answers_must_be_single_tokens(tiny: dict[str, Any]) -> None:
    with pytest.raises(ModelLoadError, match="OV-2014"):
        answer_ids(tiny["base"].backend, PromptFormat(yes=" effectiveness-yes", no=" no"))


def test_encoder_only_graph_is_refused(tiny: dict[str, Any], tmp_path: Path) -> None:
    from optimum.exporters.onnx import main_export

    main_export(
        str(tiny["onnx"].parent.parent / "base"),
        str(tmp_path),
        task="text-generation",
        device="cpu",
        do_validation=False,
    )
    yes_id, no_id = tiny["ids"]
    with pytest.raises(ModelLoadError, match="OV-2015"):
        OnnxYesNoScorer(load_session(tmp_path / "model.onnx", [CPU]), yes_id, no_id, pad_id=0)
