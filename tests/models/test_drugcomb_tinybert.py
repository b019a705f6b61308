"""Helpers (no tests): a tiny random-init BERT with a WordPiece tokenizer, and a LoRA-trained ONNX model dir.

Stands in for MiniLM in the drugcomb and toxicity tests: same architecture family, same tokenizer
format, built in about a second. Random weights, so tests assert equivalences and shapes, not accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

WORDS = (
    "patient reports denies no grade mild moderate severe urinary urgency frequency cystitis hematuria "
    "incontinence retention pain proctitis diarrhea rectal bleeding fatigue erectile dysfunction with "
    "the of and plus given cisplatin paclitaxel carboplatin gemcitabine response progression combination "
    "treatment weekly visit fractions pelvis completed loose stools dysuria tiredness blood urine << >> "
    "( ) , . : ; 1 2 3 4 5 ctcae gy radiation oncology note review symptom plan"
)


def build_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """config.json, model.safetensors and tokenizer.json of a 2-layer BERT (hidden 32) in ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials)
    tokenizer.train_from_iterator([WORDS] * 5, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


def build_tiny_model_dir(
    base: Path,
    root: Path,
    labels: Sequence[str],
    rows: Sequence[Any],
    targets: Sequence[tuple[int, ...]],
    loss: Any,
    pooling: str,
    task_extra: dict[str, Any],
    max_len: int = 64,
    extra_files: dict[str, str] | None = None,
) -> tuple[Path, Any]:
    """Train a few steps, save the artifact, build the ONNX directory (with its own parity check) and card.

    Returns the model directory and the merged torch model rebuilt from the artifact (for parity checks).
    """
    from models.card import ModelCard, write_card
    from models.drugcomb.pooled import PooledTask
    from models.drugcomb.pooled_build import build_pooled_dir, load_merged
    from models.drugcomb.pooled_train import (
        PooledHyperparameters,
        TrainExample,
        build_model,
        save_artifact,
        train_pooled,
    )

    hp = PooledHyperparameters(
        pooling=pooling,  # type: ignore[arg-type]
        top_layers=1,
        mlp_hidden=16,
        lora_r=4,
        max_steps=4,
        batch_size=2,
        max_length=max_len,
        learning_rate=5e-3,
        threads=1,
    )
    model = build_model(base, len(labels), hp)
    train_pooled(model, base, [TrainExample(r, t) for r, t in zip(rows, targets, strict=True)], loss, hp)
    artifact = root / "artifact"
    save_artifact(model, artifact)
    PooledTask(list(labels), hp.pooling, max_len, hp.mlp_hidden, hp.top_layers, "tiny-bert", task_extra).write(artifact)
    for name, text in (extra_files or {}).items():
        (artifact / name).write_text(text, encoding="utf-8")
    card = ModelCard(
        name="tiny", task="test", version="0", labels=list(labels), base_model="tiny-bert", base_model_source="test"
    )
    write_card(artifact, card)
    out = root / "model"
    build_pooled_dir(artifact, out, base, list(rows), int8=False, extra_files=tuple(extra_files or ()))
    write_card(out, card)
    return out, load_merged(artifact, base)
