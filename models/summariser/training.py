"""Supervised fine-tuning then DPO of a summariser, causal LM (LoRA) or seq2seq (all weights), on CPU.

SFT: cross-entropy on the reference narrative given the rendered record (prompt tokens masked).
DPO (Rafailov et al. 2023), our own dependency-free implementation: the SFT model, frozen, is the
reference; its log-probabilities of every chosen and rejected completion are computed once before DPO, so a
DPO step costs one forward/backward over a chosen and a rejected text. Loss per pair:
``-logsigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))`` plus ``sft_weight`` times the chosen text's
mean token NLL, which keeps the wording from drifting while the preference moves (the RPO variant).
For a causal LM the same LoRA adapter keeps training through DPO, and both adapters are saved (SFT for the
before/after comparison). torch and peft are imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from models.summariser.narrative import narrate, render_prompt
from models.summariser.pairs import PreferencePair
from models.summariser.record import DrugGroup

log = logging.getLogger(__name__)
LOG_EVERY = 20

Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class SummariserTrainConfig:
    """Hyperparameters, recorded in the model card. Seeds fixed; step counts decide, seconds are a safety net."""

    arch: str = "causal"  # "causal" (LoRA on a pretrained decoder) or "seq2seq" (all weights)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    # LoRA on the top layers only: backward then stops there, which halves a CPU step on SmolLM2 (0 = all)
    lora_layers: int = 8
    sft_steps: int = 200
    sft_learning_rate: float = 1e-3
    dpo_steps: int = 80
    dpo_learning_rate: float = 2e-4
    dpo_beta: float = 0.1
    dpo_sft_weight: float = 0.2
    batch_size: int = 4
    max_prompt_tokens: int = 384
    max_target_tokens: int = 160
    warmup_steps: int = 10
    seed: int = 13
    threads: int = 2
    max_seconds: float = 1500.0

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["target_modules"] = list(self.target_modules)
        return record


@dataclass
class StageLog:
    steps: int = 0
    seconds: float = 0.0
    first_loss: float = float("nan")
    final_loss: float = float("nan")
    extra: dict[str, float] | None = None

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "first_loss": round(self.first_loss, 4),
            "final_loss": round(self.final_loss, 4),
        }
        if self.extra:
            out.update({k: round(v, 4) for k, v in self.extra.items()})
        return out


class Batcher:
    """Turns (prompt, completion) texts into padded tensors for either architecture."""

    def __init__(self, arch: str, encode: Encode, eos_id: int, pad_id: int, config: SummariserTrainConfig) -> None:
        self.arch, self.encode, self.eos, self.pad, self.config = arch, encode, eos_id, pad_id, config

    def tensors(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, Any]:
        import torch

        cfg = self.config
        rows = []
        for prompt, completion in zip(prompts, completions, strict=True):
            p = self.encode(prompt)[: cfg.max_prompt_tokens]
            c = [*self.encode(completion)[: cfg.max_target_tokens], self.eos]
            rows.append((p, c))
        if self.arch == "causal":
            width = max(len(p) + len(c) for p, c in rows)
            ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            labels = torch.full((len(rows), width), -100, dtype=torch.long)
            for i, (p, c) in enumerate(rows):
                ids[i, : len(p) + len(c)] = torch.tensor(p + c)
                mask[i, : len(p) + len(c)] = 1
                labels[i, len(p) : len(p) + len(c)] = torch.tensor(c)
            return {"input_ids": ids, "attention_mask": mask, "labels": labels}
        src_w = max(len(p) + 1 for p, _ in rows)
        tgt_w = max(len(c) for _, c in rows)
        ids = torch.full((len(rows), src_w), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), src_w), dtype=torch.long)
        labels = torch.full((len(rows), tgt_w), -100, dtype=torch.long)
        for i, (p, c) in enumerate(rows):
            ids[i, : len(p) + 1] = torch.tensor([*p, self.eos])
            mask[i, : len(p) + 1] = 1
            labels[i, : len(c)] = torch.tensor(c)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completion_logprobs(model: Any, batch: dict[str, Any], arch: str) -> tuple[Any, Any]:
    """Sum of log p(completion token) per row, and the number of completion tokens per row."""
    import torch

    labels = batch["labels"]
    if arch == "causal":
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = labels[:, 1:]
    else:
        logits = model(**batch).logits
    mask = labels != -100
    safe = labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1), mask.sum(-1)


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _optimizer(model: Any, lr: float) -> Any:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def train_sft(
    model: Any, batcher: Batcher, groups: Sequence[DrugGroup], config: SummariserTrainConfig, deadline: float
) -> StageLog:
    """Cross-entropy on the reference narratives; ``model`` is trained in place."""
    import torch

    rng = random.Random(config.seed)
    order: list[DrugGroup] = []
    opt = _optimizer(model, config.sft_learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, config.sft_steps, config.warmup_steps))
    stage = StageLog()
    started = time.perf_counter()
    model.train()
    smooth = float("nan")
    for step in range(config.sft_steps):
        if time.perf_counter() > deadline:
            log.warning("SFT stopped at the time limit", extra={"step": step})
            break
        if len(order) < config.batch_size:
            order = list(groups)
            rng.shuffle(order)
        chunk, order = order[: config.batch_size], order[config.batch_size :]
        batch = batcher.tensors([render_prompt(g) for g in chunk], [narrate(g) for g in chunk])
        logp, count = completion_logprobs(model, batch, config.arch)
        loss = -(logp.sum() / count.sum())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        stage.first_loss = value if step == 0 else stage.first_loss
        smooth = value if math.isnan(smooth) else 0.9 * smooth + 0.1 * value
        stage.steps = step + 1
        if step % LOG_EVERY == 0:
            log.info("sft", extra={"step": step, "loss": round(smooth, 4)})
    stage.final_loss = smooth
    stage.seconds = time.perf_counter() - started
    model.eval()
    return stage


def reference_logprobs(model: Any, batcher: Batcher, pairs: Sequence[PreferencePair], arch: str) -> list[float]:
    """The frozen reference's log p(chosen) and log p(rejected), interleaved [c0, r0, c1, r1, ...]."""
    import torch

    out: list[float] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), 4):
            chunk = pairs[start : start + 4]
            prompts = [render_prompt(p.group) for p in chunk for _ in (0, 1)]
            texts = [t for p in chunk for t in (p.chosen, p.rejected)]
            logp, _ = completion_logprobs(model, batcher.tensors(prompts, texts), arch)
            out.extend(float(v) for v in logp)
    return out


def train_dpo(
    model: Any,
    batcher: Batcher,
    pairs: Sequence[PreferencePair],
    reference: Sequence[float],
    config: SummariserTrainConfig,
    deadline: float,
) -> StageLog:
    """DPO on ``pairs`` against precomputed ``reference`` log-probabilities; ``model`` is trained in place."""
    import torch
    import torch.nn.functional as F

    rng = random.Random(config.seed + 1)
    indices: list[int] = []
    half = max(1, config.batch_size // 2)  # a pair is two sequences
    opt = _optimizer(model, config.dpo_learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, config.dpo_steps, config.warmup_steps))
    stage = StageLog()
    started = time.perf_counter()
    model.train()
    smooth, acc = float("nan"), float("nan")
    for step in range(config.dpo_steps):
        if time.perf_counter() > deadline:
            log.warning("DPO stopped at the time limit", extra={"step": step})
            break
        if len(indices) < half:
            indices = list(range(len(pairs)))
            rng.shuffle(indices)
        chunk, indices = indices[:half], indices[half:]
        prompts = [render_prompt(pairs[i].group) for i in chunk for _ in (0, 1)]
        texts = [t for i in chunk for t in (pairs[i].chosen, pairs[i].rejected)]
        logp, count = completion_logprobs(model, batcher.tensors(prompts, texts), config.arch)
        ref = torch.tensor([v for i in chunk for v in (reference[2 * i], reference[2 * i + 1])])
        margin = (logp[0::2] - ref[0::2]) - (logp[1::2] - ref[1::2])
        pref = -F.logsigmoid(config.dpo_beta * margin).mean()
        nll = -(logp[0::2] / count[0::2]).mean()
        loss = pref + config.dpo_sft_weight * nll
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        right = float((margin > 0).float().mean())
        stage.first_loss = value if step == 0 else stage.first_loss
        smooth = value if math.isnan(smooth) else 0.9 * smooth + 0.1 * value
        acc = right if math.isnan(acc) else 0.9 * acc + 0.1 * right
        stage.steps = step + 1
        if step % LOG_EVERY == 0:
            log.info("dpo", extra={"step": step, "loss": round(smooth, 4), "pair_accuracy": round(acc, 3)})
    stage.final_loss = smooth
    stage.extra = {"pair_accuracy": acc}
    stage.seconds = time.perf_counter() - started
    model.eval()
    return stage


def add_lora(model: Any, config: SummariserTrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    total = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    layers = list(range(total - config.lora_layers, total)) if 0 < config.lora_layers < total else None
    lora = LoraConfig(
        r=config.lora_r,
        layers_to_transform=layers,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
