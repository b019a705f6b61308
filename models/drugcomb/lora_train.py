"""A small LoRA training loop for BERT-style sequence classifiers with a caller-supplied loss.

``models.encoder_train`` (transformers' Trainer) covers one softmax per input; this loop exists for heads
that read one logit row as several groups (the toxicity head: a status and a grade softmax per symptom)
and for runs that must end within a wall-clock budget on a shared CPU. It writes the same artifact as
``encoder_train`` (a PEFT adapter: LoRA matrices, trained pooler and head; never the base weights), so
``models.encoder_export.build_encoder_dir`` merges and exports it. Training-time only: torch and peft are
imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.drugcomb.encoding import encode, load_tokenizer, pad_feeds
from models.errors import TrainingError
from models.runtime import bucket_by_length

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# LoRA on the attention and feed-forward projections (and the pooler unless it is trained in full);
# the classification head is always trained in full.
LORA_TARGETS = ["query", "key", "value", "intermediate.dense", "output.dense"]


@dataclass(frozen=True)
class LoraHyperparameters:
    """Everything that shapes a training run; recorded verbatim in the model card."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    # LoRA only in the top ``lora_top_layers`` encoder layers (0: all). Gradients then stop below them,
    # which cuts the backward pass roughly in half on a CPU; the frozen lower layers still run forward.
    lora_top_layers: int = 0
    train_pooler: bool = False
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    epochs: float = 3.0
    batch_size: int = 16
    max_tokens_per_batch: int = 4096
    max_length: int = 192
    seed: int = 13
    threads: int = 0  # 0: pick from the load (see ``auto_threads``)
    max_steps: int = 0  # 0: run all epochs
    time_budget_s: float = 0.0  # 0: no budget; else stop (and decay to zero) by this many seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainExample:
    """One classifier input: text, optional second segment, and integer targets (one per output group)."""

    text: str
    pair: str | None
    targets: tuple[int, ...]


@dataclass(frozen=True)
class TrainStats:
    steps: int
    examples_seen: int
    seconds: float
    final_loss: float
    stopped_by_budget: bool


Progress = Callable[[int, int, float], None]
LossFn = Callable[[Any, Any], Any]  # (logits tensor [B, C], targets tensor [B, T]) -> scalar loss


def auto_threads() -> int:
    """All cores on an idle machine, one on a busy one.

    On a shared CPU, intra-op threads that wait on each other while other processes hold the cores cost
    more than they give (measured here: 2 threads ran 2.5x slower than 1 at a load of 10 on 2 cores).
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return 1 if load > cores else cores


def build_lora_classifier(base_dir: Path, labels: Sequence[str], hp: LoraHyperparameters) -> Any:
    """The base encoder with a fresh classification head of ``len(labels)`` outputs, wrapped in LoRA."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(hp.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base_dir),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    layers = int(model.config.num_hidden_layers)
    top = list(range(layers - hp.lora_top_layers, layers)) if 0 < hp.lora_top_layers < layers else None
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=LORA_TARGETS if hp.train_pooler else [*LORA_TARGETS, "pooler.dense"],
        layers_to_transform=top,
        layers_pattern="layer" if top else None,
        modules_to_save=["classifier", "pooler"] if hp.train_pooler else ["classifier"],
        task_type="SEQ_CLS",
    )
    return get_peft_model(model, config)


def _batches(
    examples: Sequence[TrainExample], encodings: Sequence[Any], hp: LoraHyperparameters, rng: random.Random
) -> list[list[int]]:
    """Length-bucketed batches in a shuffled order (buckets keep padding small on CPU)."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    # Bucket within chunks of 50 batches so each epoch still mixes lengths and labels.
    chunk = hp.batch_size * 50
    batches: list[list[int]] = []
    for at in range(0, len(order), chunk):
        part = order[at : at + chunk]
        for local in bucket_by_length(part, lambda i: len(encodings[i].ids), hp.batch_size, hp.max_tokens_per_batch):
            batches.append([part[j] for j in local])
    rng.shuffle(batches)
    return batches


def train_lora_classifier(
    model: Any,
    base_dir: Path,
    examples: Sequence[TrainExample],
    loss_fn: LossFn,
    hp: LoraHyperparameters,
    progress: Progress | None = None,
    show_progress: bool = False,
) -> TrainStats:
    """AdamW with linear warm-up and decay over ``epochs`` (or until ``max_steps`` / the time budget).

    ``show_progress`` draws a tqdm bar on stderr (a terminal); otherwise a log line every 50 steps.
    ``progress`` is called after every step with (step, total, smoothed loss).
    """
    import torch
    from tqdm.auto import tqdm

    if not examples:
        raise TrainingError("OV-2050", "no training examples; check the training data directory")
    torch.set_num_threads(hp.threads if hp.threads > 0 else auto_threads())
    rng = random.Random(hp.seed)
    tokenizer = load_tokenizer(base_dir, hp.max_length)
    encodings = encode(tokenizer, [e.text for e in examples], [e.pair for e in examples])
    steps_per_epoch = len(_batches(examples, encodings, hp, random.Random(0)))
    total = hp.max_steps or max(1, math.ceil(steps_per_epoch * hp.epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    warmup = max(1, int(total * hp.warmup_ratio))
    started = time.monotonic()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, total - warmup)
        if hp.time_budget_s > 0:  # decay on whichever runs out first: steps or seconds
            done = max(done, (time.monotonic() - started) / hp.time_budget_s)
        return max(0.0, 1.0 - done)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train()
    bar = tqdm(total=total, desc="train", unit="step", disable=not show_progress, leave=False)
    step, seen, loss_ema, by_budget = 0, 0, float("nan"), False
    while step < total and not by_budget:
        for batch in _batches(examples, encodings, hp, rng):
            feeds = pad_feeds([encodings[i] for i in batch])
            inputs = {k: torch.from_numpy(v) for k, v in feeds.items()}
            targets = torch.tensor([examples[i].targets for i in batch], dtype=torch.long)
            logits = model(**inputs).logits
            loss = loss_fn(logits, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(batch)
            value = float(loss.detach())
            loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
            if progress is not None:
                progress(step, total, loss_ema)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_ema:.4f}", refresh=False)
            if not show_progress and step % 50 == 0:
                log.info("training step", extra={"step": step, "total": total, "loss": round(loss_ema, 4)})
            if hp.time_budget_s > 0 and time.monotonic() - started >= hp.time_budget_s:
                by_budget = True
            if step >= total or by_budget:
                break
    bar.close()
    model.eval()
    return TrainStats(step, seen, time.monotonic() - started, loss_ema, by_budget)


def torch_logits(
    model: Any,
    base_dir: Path,
    texts: Sequence[str],
    pairs: Sequence[str | None],
    hp_max_length: int,
    batch_size: int = 32,
) -> np.ndarray:
    """Logits from a torch model (LoRA-wrapped or merged), in input order; used for dev metrics and parity."""
    import torch

    tokenizer = load_tokenizer(base_dir, hp_max_length)
    encodings = encode(tokenizer, texts, pairs)
    rows: list[np.ndarray | None] = [None] * len(encodings)
    model.eval()
    with torch.no_grad():
        for batch in bucket_by_length(encodings, lambda e: len(e.ids), batch_size, 8192):
            feeds = pad_feeds([encodings[i] for i in batch])
            out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.float().numpy()
            for i, row in zip(batch, out, strict=True):
                rows[i] = row
    return np.stack([r for r in rows if r is not None])


def save_adapter(model: Any, out_dir: Path) -> list[str]:
    """Write only the adapter (LoRA + pooler + head), never the base weights; returns the file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    for extra in ("README.md",):  # peft writes a template model card; ours is model_card.json
        (out_dir / extra).unlink(missing_ok=True)
    missing = [f for f in ADAPTER_FILES if not (out_dir / f).is_file()]
    if missing:
        raise TrainingError("OV-2051", f"saving the adapter to {out_dir} did not write {missing}; check disk space")
    return list(ADAPTER_FILES)
