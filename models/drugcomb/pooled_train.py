"""Encoder + pooled MLP head, the training half: LoRA on the top encoder layers, the frozen bottom cached.

CPU time is the budget (2 shared cores). LoRA sits only in the top ``top_layers`` layers, so the bottom
of the encoder never changes: it runs once per example (no gradient), its output is cached, and every
epoch runs only the top layers, the pooling and the head. With 2 of 6 layers trainable an epoch costs
about a third of a full LoRA epoch. The features and the head match ``pooled`` (numpy) exactly.
Training-time only: torch, transformers and peft are imported inside the functions.
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

from models.adapter_files import save_adapter_files
from models.drugcomb.pooled import (
    HEAD_FILE,
    POOLED_BLOCKS,
    InputRow,
    Pooling,
    encode_rows,
    load_tokenizer,
    pad_batch,
)
from models.errors import TrainingError
from models.runtime import bucket_by_length

log = logging.getLogger(__name__)

LORA_TARGETS = ["query", "key", "value", "intermediate.dense", "output.dense"]
LossFn = Callable[[Any, Any], Any]  # (logits [B, C], targets [B, T]) -> scalar


@dataclass(frozen=True)
class PooledHyperparameters:
    """Everything that shapes a run; recorded verbatim in the model card."""

    pooling: Pooling = "cls_mean"
    top_layers: int = 2
    mlp_hidden: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    head_dropout: float = 0.1
    learning_rate: float = 1e-3
    head_learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    epochs: float = 6.0
    batch_size: int = 32
    max_length: int = 192
    seed: int = 13
    threads: int = 0  # 0: pick from the load (see ``auto_threads``)
    max_steps: int = 0  # 0: run all epochs
    time_budget_s: float = 0.0  # 0: none; else stop (with the learning rate decayed) by then

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, pooling: Pooling, config: object) -> PooledHyperparameters:
        """The task config's values for the fields every pooled task sets; the rest keep these defaults."""
        return cls(pooling=pooling, **{name: getattr(config, name) for name in TASK_SET_FIELDS})


# What a pooled task's own config decides (the drugcomb and toxicity configs both carry these names).
TASK_SET_FIELDS = (
    "top_layers",
    "mlp_hidden",
    "lora_r",
    "lora_alpha",
    "learning_rate",
    "head_learning_rate",
    "epochs",
    "batch_size",
    "max_length",
    "seed",
    "threads",
    "time_budget_s",
    "max_steps",
)


@dataclass(frozen=True)
class TrainExample:
    row: InputRow
    targets: tuple[int, ...]


@dataclass(frozen=True)
class TrainStats:
    steps: int
    examples_seen: int
    cache_seconds: float
    train_seconds: float
    final_loss: float
    stopped_by_budget: bool
    threads: int


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


class PooledModel:
    """A LoRA-wrapped encoder and the torch twin of the numpy head."""

    def __init__(self, encoder: Any, head: Any, pooling: Pooling, top_layers: int) -> None:
        self.encoder = encoder  # peft model around a transformers BertModel
        self.head = head
        self.pooling = pooling
        self.top_layers = top_layers

    @property
    def core(self) -> Any:
        return self.encoder.get_base_model()

    @property
    def split(self) -> int:
        return int(self.core.config.num_hidden_layers) - self.top_layers

    def bottom(self, feeds: dict[str, Any]) -> Any:
        """Embeddings and the frozen layers (no gradient)."""
        import torch

        core = self.core
        with torch.no_grad():
            hidden = core.embeddings(input_ids=feeds["input_ids"], token_type_ids=feeds["token_type_ids"])
            mask = core.get_extended_attention_mask(feeds["attention_mask"], feeds["input_ids"].shape)
            for layer in core.encoder.layer[: self.split]:
                hidden = layer(hidden, attention_mask=mask)[0]
        return hidden

    def top(self, hidden: Any, masks: dict[str, Any]) -> Any:
        """The trainable layers, the pooling and the head: logits (``masks``: attention, focus, other)."""
        core = self.core
        attention = masks["attention_mask"]
        extended = core.get_extended_attention_mask(attention, attention.shape)
        for layer in core.encoder.layer[self.split :]:
            hidden = layer(hidden, attention_mask=extended)[0]
        return self.head(torch_pool(hidden, masks, self.pooling))

    def logits(self, feeds: dict[str, Any]) -> Any:
        return self.top(self.bottom(feeds), feeds)

    def train(self, mode: bool = True) -> None:
        self.encoder.train(mode)
        self.head.train(mode)


def torch_pool(hidden: Any, masks: dict[str, Any], pooling: Pooling) -> Any:
    """``pooled.pool`` in torch."""
    import torch

    names = ["attention_mask", "focus_mask", "other_mask"][: POOLED_BLOCKS[pooling] - 1]
    parts = [hidden[:, 0]]
    for name in names:
        weights = masks[name].unsqueeze(-1).to(hidden.dtype)
        parts.append((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0))
    return torch.cat(parts, dim=-1)


def make_head(in_dim: int, hidden: int, n_out: int, dropout: float) -> Any:
    import torch

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = torch.nn.Dropout(dropout)
            self.fc1 = torch.nn.Linear(in_dim, hidden)
            self.fc2 = torch.nn.Linear(hidden, n_out)

        def forward(self, features: Any) -> Any:
            return self.fc2(self.drop(torch.tanh(self.fc1(self.drop(features)))))

    return Head()


def build_model(base_dir: Path, n_out: int, hp: PooledHyperparameters) -> PooledModel:
    """The base encoder with LoRA in its top layers and a fresh head."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(hp.seed)
    core = AutoModel.from_pretrained(str(base_dir), add_pooling_layer=False)
    layers = int(core.config.num_hidden_layers)
    if not 1 <= hp.top_layers <= layers:
        raise TrainingError("OV-2050", f"top_layers must be 1..{layers}, got {hp.top_layers}")
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=LORA_TARGETS,
        layers_to_transform=list(range(layers - hp.top_layers, layers)),
        layers_pattern="layer",
    )
    encoder = get_peft_model(core, config)
    width = int(core.config.hidden_size) * POOLED_BLOCKS[hp.pooling]
    return PooledModel(encoder, make_head(width, hp.mlp_hidden, n_out, hp.head_dropout), hp.pooling, hp.top_layers)


def _to_torch(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v) for k, v in feeds.items()}


def train_pooled(
    model: PooledModel,
    base_dir: Path,
    examples: Sequence[TrainExample],
    loss_fn: LossFn,
    hp: PooledHyperparameters,
    show_progress: bool = False,
) -> TrainStats:
    """Cache the frozen bottom once, then AdamW (warm-up, linear decay) over the top, pooling and head."""
    import torch
    from tqdm.auto import tqdm

    if not examples:
        raise TrainingError("OV-2050", "no training examples; check the training data")
    threads = hp.threads if hp.threads > 0 else auto_threads()
    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(base_dir, hp.max_length)
    encodings = encode_rows(tokenizer, [e.row for e in examples])
    started = time.monotonic()
    model.train(False)
    cache: list[Any] = [None] * len(examples)
    masks: list[Any] = [None] * len(examples)
    for batch in bucket_by_length(encodings, lambda e: len(e.ids), 64, 8192):
        feeds = _to_torch(pad_batch([encodings[i] for i in batch], [examples[i].row for i in batch]))
        hidden = model.bottom(feeds)
        for row, i in enumerate(batch):
            n = len(encodings[i].ids)
            cache[i] = hidden[row, :n].clone()
            masks[i] = torch.stack([feeds["focus_mask"][row, :n], feeds["other_mask"][row, :n]], dim=-1)
    cache_seconds = time.monotonic() - started
    log.info("cached the frozen layers", extra={"examples": len(examples), "seconds": round(cache_seconds, 1)})
    rng = random.Random(hp.seed)
    order_batches = _epoch_batches(encodings, hp, random.Random(0))
    total = hp.max_steps or max(1, math.ceil(len(order_batches) * hp.epochs))
    lora = [p for p in model.encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": lora, "lr": hp.learning_rate},
            {"params": list(model.head.parameters()), "lr": hp.head_learning_rate},
        ],
        weight_decay=hp.weight_decay,
    )
    warmup = max(1, int(total * hp.warmup_ratio))
    train_started = time.monotonic()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, total - warmup)
        if hp.time_budget_s > 0:
            done = max(done, (time.monotonic() - started) / hp.time_budget_s)
        return max(0.0, 1.0 - done)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    width = int(model.core.config.hidden_size)
    model.train(True)
    bar = tqdm(total=total, desc="train", unit="step", disable=not show_progress, leave=False)
    step, seen, loss_ema, by_budget = 0, 0, float("nan"), False
    while step < total and not by_budget:
        for batch in _epoch_batches(encodings, hp, rng):
            longest = max(len(encodings[i].ids) for i in batch)
            hidden = torch.zeros((len(batch), longest, width))
            attention = torch.zeros((len(batch), longest), dtype=torch.long)
            marks = torch.zeros((len(batch), longest, 2))
            for row, i in enumerate(batch):
                n = cache[i].shape[0]
                hidden[row, :n] = cache[i]
                attention[row, :n] = 1
                marks[row, :n] = masks[i]
            targets = torch.tensor([examples[i].targets for i in batch], dtype=torch.long)
            batch_masks = {"attention_mask": attention, "focus_mask": marks[..., 0], "other_mask": marks[..., 1]}
            loss = loss_fn(model.top(hidden, batch_masks), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lora + list(model.head.parameters()), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(batch)
            value = float(loss.detach())
            loss_ema = value if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * value
            bar.update(1)
            bar.set_postfix(loss=f"{loss_ema:.4f}", refresh=False)
            if not show_progress and step % 50 == 0:
                log.info("training step", extra={"step": step, "total": total, "loss": round(loss_ema, 4)})
            if hp.time_budget_s > 0 and time.monotonic() - started >= hp.time_budget_s:
                by_budget = True
            if step >= total or by_budget:
                break
    bar.close()
    model.train(False)
    return TrainStats(
        steps=step,
        examples_seen=seen,
        cache_seconds=round(cache_seconds, 1),
        train_seconds=round(time.monotonic() - train_started, 1),
        final_loss=round(loss_ema, 4),
        stopped_by_budget=by_budget,
        threads=threads,
    )


def _epoch_batches(encodings: Sequence[Any], hp: PooledHyperparameters, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (bucketed within chunks so each epoch still mixes)."""
    order = list(range(len(encodings)))
    rng.shuffle(order)
    chunk = hp.batch_size * 20
    batches: list[list[int]] = []
    for at in range(0, len(order), chunk):
        part = order[at : at + chunk]
        for local in bucket_by_length(part, lambda i: len(encodings[i].ids), hp.batch_size, 16384):
            batches.append([part[j] for j in local])
    rng.shuffle(batches)
    return batches


def torch_logits(model: PooledModel, base_dir: Path, rows: Sequence[InputRow], max_length: int) -> np.ndarray:
    """Logits of the torch model (LoRA-wrapped or merged encoder) in input order: dev scores and parity."""
    import torch

    tokenizer = load_tokenizer(base_dir, max_length)
    encodings = encode_rows(tokenizer, rows)
    out: list[np.ndarray | None] = [None] * len(rows)
    model.train(False)
    with torch.no_grad():
        for batch in bucket_by_length(encodings, lambda e: len(e.ids), 32, 8192):
            feeds = _to_torch(pad_batch([encodings[i] for i in batch], [rows[i] for i in batch]))
            logits = model.logits(feeds).float().numpy()
            for row, i in enumerate(batch):
                out[i] = logits[row]
    return np.stack([r for r in out if r is not None]) if rows else np.zeros((0, 0), dtype=np.float32)


def save_artifact(model: PooledModel, out_dir: Path, base_name: str) -> None:
    """The LoRA adapter (peft format) and the head weights (``head.npz``); never the base weights."""
    save_adapter_files(model.encoder, out_dir, base_name)
    weights = {k: v.detach().cpu().numpy() for k, v in model.head.state_dict().items()}
    np.savez(out_dir / HEAD_FILE, **weights)
