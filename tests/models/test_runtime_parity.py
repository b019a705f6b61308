"""A tiny random-init BERT token classifier: LoRA train, merge, export, torch-vs-ONNX parity, numpy runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from models.backbone import minilm_dir
from models.card import ModelCard, write_card
from models.encoder_export import (
    HIDDEN_OUTPUT,
    PARITY_ATOL,
    build_encoder_dir,
    export_user_hf_dir,
    load_merged_torch,
)
from models.encoder_infer import EncoderTokenizer, TokenClassifierRunner, decode_bio, read_labels
from models.encoder_train import EncoderTrainConfig, SpanExample, align_bio, bio_labels, train_token_classifier
from models.fp16 import FP16_FILE, FP16_MIN_AGREEMENT
from models.runtime import CPU, CUDA, load_session, pick_variant
from tests.models.tiny_encoder import save_with_tokenizer

LABELS = ["O", "B-DRUG", "I-DRUG", "B-AE", "I-AE"]
TEXTS = ["Grade 3 neutropenia likely secondary to docetaxel.", "Denies nausea.", "Carboplatin-induced rash."]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide BERT with MiniLM's tokenizer, random weights, saved as a Hugging Face dir."""
    directory = tmp_path_factory.mktemp("tiny-base")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return save_with_tokenizer(BertForTokenClassification(config), directory, minilm_dir())


def test_bio_alignment_marks_first_and_inner_tokens() -> None:
    labels = bio_labels(["DRUG", "AE"])
    ids = {label: i for i, label in enumerate(labels)}
    offsets = [(0, 0), (0, 3), (3, 7), (8, 14), (15, 17), (0, 0)]  # [CLS] met ##form nausea xx [SEP]
    got = align_bio(offsets, [(0, 7, "DRUG"), (8, 14, "AE")], ids)
    assert got == [-100, ids["B-DRUG"], ids["I-DRUG"], ids["B-AE"], ids["O"], -100]


def test_user_hf_dir_exports_with_parity(tiny_base: Path, tmp_path: Path) -> None:
    report = export_user_hf_dir(tiny_base, tmp_path / "onnx", "token-classification", TEXTS)
    assert report.parity_max_abs_diff < PARITY_ATOL
    assert (tmp_path / "onnx" / "model.onnx").is_file()
    assert read_labels(tmp_path / "onnx") == LABELS


def test_lora_artifact_builds_a_parity_checked_onnx_dir(tiny_base: Path, tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    config = EncoderTrainConfig(
        base_dir=tiny_base, base_name="tiny", max_len=32, max_steps=3, batch_size=2, lora_r=4, show_progress=False
    )
    examples = [SpanExample(TEXTS[0], ((8, 19, "AE"), (40, 49, "DRUG"))), SpanExample(TEXTS[1], ((7, 13, "AE"),))]
    result = train_token_classifier(examples, ["DRUG", "AE"], config, artifact)
    assert result.steps == 3
    adapter_bytes = sum(p.stat().st_size for p in artifact.iterdir())
    assert adapter_bytes < 1_000_000  # the artifact is the adapter, never the base weights
    write_card(artifact, ModelCard(name="t.v1", task="t", version="1", base_model="tiny", base_model_source="test"))

    out = tmp_path / "model"
    report, task = build_encoder_dir(
        artifact, out, TEXTS, hidden_output=True, int8=True, base_dir=tiny_base, fp16="always"
    )
    assert task["labels"] == LABELS
    assert report.parity_max_abs_diff < PARITY_ATOL
    assert report.hidden_output

    # the fp16 variant GPU hosts serve: checked token by token against fp32 (on CPU here), kept in the folder
    fp16 = report.as_record()["fp16"]
    assert fp16["file"] == FP16_FILE and fp16["label_agreement"] >= FP16_MIN_AGREEMENT, fp16
    assert fp16["checked_on"] in (CPU, CUDA)
    assert (out / FP16_FILE).is_file() and pick_variant(out, on_gpu=True, allow_int8=True).name == FP16_FILE

    # The numpy runner on the exported graph reproduces torch's probabilities on the merged model.
    model, _ = load_merged_torch(artifact, tiny_base)
    runner = TokenClassifierRunner(
        load_session(out / "model.onnx", [CPU]), EncoderTokenizer(out / "tokenizer.json", 32)
    )
    outputs = runner.run(TEXTS, hidden=True)
    for text, output in zip(TEXTS, outputs, strict=True):
        encoded = runner.tokenizer.encode_batch([text])[0]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([encoded.ids])).logits[0].numpy()
        expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        keep = [i for i, s in enumerate(encoded.special_tokens_mask) if not s]
        assert np.abs(expected[keep] - output.probs).max() < PARITY_ATOL
        assert output.hidden is not None and output.hidden.shape == (len(keep), 64)
        assert all(text[a:b] for a, b in output.offsets)
        spans = decode_bio(text, output, LABELS)
        # The seeded random weights tag something in every text; an empty list would check no bounds at all.
        assert spans
        for span in spans:
            assert 0 <= span.start < span.end <= len(text)
    assert HIDDEN_OUTPUT in runner.session.output_names
    vectors = runner.embed(["nausea", "vomiting"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
