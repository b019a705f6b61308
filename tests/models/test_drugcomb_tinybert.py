"""Helpers (no tests): a tiny random-init BERT with a WordPiece tokenizer, and a LoRA-trained ONNX model dir.

Stands in for MiniLM in the drugcomb and toxicity tests: same architecture family, same tokenizer
format, built in about a second. Random weights, so tests assert equivalences and shapes, not accuracy.
"""

from __future__ import annotations

import json
import shutil
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
    out: Path,
    labels: Sequence[str],
    texts: Sequence[str],
    targets: Sequence[tuple[int, ...]],
    loss: Any,
    task_extra: dict[str, Any],
    max_len: int = 128,
    pairs: Sequence[str | None] | None = None,
) -> Any:
    """Train LoRA a few steps, merge, export with optimum, write encoder_task.json and the card.

    Returns the merged torch model (for parity checks against the ONNX directory).
    """
    from optimum.exporters.onnx import main_export

    from models.card import ModelCard, write_card
    from models.drugcomb.lora_train import (
        LoraHyperparameters,
        TrainExample,
        build_lora_classifier,
        train_lora_classifier,
    )

    hp = LoraHyperparameters(max_steps=4, batch_size=4, max_length=max_len, learning_rate=5e-3, lora_r=4)
    model = build_lora_classifier(base, labels, hp)
    examples = [
        TrainExample(t, (pairs[i] if pairs else None), tuple(y)) for i, (t, y) in enumerate(zip(texts, targets))
    ]
    train_lora_classifier(model, base, examples, loss, hp)
    merged = model.merge_and_unload()
    merged.eval()
    hf = out.parent / (out.name + "-hf")
    merged.save_pretrained(str(hf))
    shutil.copy2(base / "tokenizer.json", hf / "tokenizer.json")
    main_export(str(hf), str(out), task="text-classification", device="cpu", do_validation=False)
    shutil.copy2(base / "tokenizer.json", out / "tokenizer.json")
    task = {"kind": "text-classification", "labels": list(labels), "max_len": max_len, **task_extra}
    (out / "encoder_task.json").write_text(json.dumps(task), encoding="utf-8")
    card = ModelCard(
        name="tiny", task="test", version="0", labels=list(labels), base_model="tiny-bert", base_model_source="test"
    )
    write_card(out, card)
    return merged
