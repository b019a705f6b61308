"""LoRA fine-tuning of the yes/no answer, LAMO style, with per-drug negative sampling.

Each visit gives positives (the drugs prescribed) and negatives. As in LAMO, negatives are sampled per
drug: for a drug prescribed at ``n`` training visits, ``ceil(ratio * n)`` (at least ``min_negatives``)
visits where it was a candidate but not prescribed are drawn, so frequent drugs are not simply learned as
"always yes". Deliberate overprescriptions are always negatives. A step is one visit: its prefix is encoded
once and its labelled candidates are scored over the shared cache (``margins_cached``), so a step costs
about one prompt plus a few short suffixes. The loss is binary cross-entropy on logit(yes) - logit(no).
torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.adapter_files import save_adapter_files
from models.errors import TrainingError
from models.recommender.base import SMOLLM2, BaseModel
from models.recommender.metrics import ScoredVisit, SetMetrics, calibrate_threshold
from models.recommender.prompt import PromptFormat
from models.recommender.tokens import answer_ids, encode_prompt
from models.recommender.torch_scoring import margins_cached, p_yes_cached
from models.recommender.visits import TrainingVisit

log = logging.getLogger(__name__)
LOG_EVERY = 25


@dataclass(frozen=True)
class RecommenderTrainConfig:
    """Hyperparameters, recorded in the artifact's model card. Seeds fixed; CPU-sized by default."""

    base: str = SMOLLM2
    prompt: PromptFormat = field(default_factory=PromptFormat)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    max_steps: int = 300
    max_candidates: int = 8
    negative_ratio: float = 1.0
    min_negatives: int = 3
    seed: int = 13
    threads: int = 0
    max_seconds: float = 3600.0  # a safety net; max_steps decides (time cut-offs would make runs irreproducible)
    max_size_ratio: float = 1.2
    show_progress: bool = False

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["target_modules"] = list(self.target_modules)
        record.pop("show_progress")
        return record


@dataclass(frozen=True)
class TrainOutcome:
    """What training produced: the peft model (not yet saved), its dev calibration and some counts."""

    model: Any
    threshold: float
    dev_metrics: SetMetrics
    dev_scores: list[ScoredVisit]
    seconds: float
    steps: int
    examples: int
    positives: int
    final_loss: float


def sample_examples(
    visits: Sequence[TrainingVisit], ratio: float, min_negatives: int, rng: random.Random
) -> list[list[tuple[str, int]]]:
    """Per visit, the labelled candidates ``(drug, 1|0)`` under LAMO's per-drug negative sampling."""
    positives: dict[str, list[int]] = defaultdict(list)
    pool: dict[str, list[int]] = defaultdict(list)
    chosen: list[dict[str, int]] = [{} for _ in visits]
    for i, visit in enumerate(visits):
        for drug in visit.appropriate:
            positives[drug].append(i)
            chosen[i][drug] = 1
        for drug in visit.overprescribed:
            chosen[i].setdefault(drug, 0)
        for drug in visit.universe:
            if drug not in chosen[i]:
                pool[drug].append(i)
    for drug in sorted(pool):
        wanted = max(min_negatives, math.ceil(ratio * len(positives.get(drug, []))))
        for i in rng.sample(pool[drug], k=min(wanted, len(pool[drug]))):
            chosen[i][drug] = 0
    return [sorted(c.items()) for c in chosen]


def _steps(
    groups: list[list[tuple[str, int]]], max_candidates: int, rng: random.Random
) -> list[tuple[int, list[tuple[str, int]]]]:
    steps: list[tuple[int, list[tuple[str, int]]]] = []
    for i, group in enumerate(groups):
        shuffled = list(group)
        rng.shuffle(shuffled)
        for start in range(0, len(shuffled), max_candidates):
            steps.append((i, shuffled[start : start + max_candidates]))
    rng.shuffle(steps)
    return steps


def _lora(base: BaseModel, config: RecommenderTrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(base.model, lora)
    except ValueError as exc:
        raise TrainingError(
            "OV-2054",
            f"LoRA cannot target {list(config.target_modules)} in this base model ({exc}); "
            "set target_modules to its attention projection names",
        ) from exc


def score_visits(
    model: Any,
    base: BaseModel,
    fmt: PromptFormat,
    visits: Sequence[TrainingVisit],
    show_progress: bool = False,
) -> list[ScoredVisit]:
    """P(yes) for every candidate of every visit (torch, no gradients)."""
    from tqdm import tqdm

    yes_id, no_id = answer_ids(base.backend, fmt)
    model.eval()
    scored = []
    for visit in tqdm(visits, desc="dev scoring", disable=not show_progress, leave=False):
        drugs = list(visit.universe)
        prefix, suffixes = encode_prompt(base.backend, fmt, visit.patient, drugs)
        probs = p_yes_cached(model, prefix, suffixes, yes_id, no_id, no_id)
        scored.append(
            ScoredVisit(
                scores=dict(zip(drugs, probs, strict=True)),
                prescribed=frozenset(visit.appropriate),
                overprescribed=frozenset(visit.overprescribed),
            )
        )
    return scored


def train_recommender(
    base: BaseModel,
    train: Sequence[TrainingVisit],
    dev: Sequence[TrainingVisit],
    config: RecommenderTrainConfig,
) -> TrainOutcome:
    """Fine-tune LoRA on the yes/no answer, then calibrate the threshold on ``dev``."""
    import torch
    from tqdm import tqdm

    if not train:
        raise TrainingError("OV-2055", "no training visits; check the data directory")
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    fmt = config.prompt
    yes_id, no_id = answer_ids(base.backend, fmt)
    groups = sample_examples(train, config.negative_ratio, config.min_negatives, rng)
    model = _lora(base, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return max(0.05, 1.0 - (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    prompts = [encode_prompt(base.backend, fmt, v.patient, [])[0] for v in train]
    started = time.monotonic()
    steps_done, losses = 0, []
    model.train()
    bar = tqdm(total=config.max_steps, desc="recommender LoRA", disable=not config.show_progress)
    while steps_done < config.max_steps and time.monotonic() - started < config.max_seconds:
        for visit_index, labelled in _steps(groups, config.max_candidates, rng):
            if steps_done >= config.max_steps or time.monotonic() - started >= config.max_seconds:
                break
            _, suffixes = encode_prompt(base.backend, fmt, train[visit_index].patient, [d for d, _ in labelled])
            labels = torch.tensor([float(y) for _, y in labelled])
            margins = margins_cached(model, prompts[visit_index], suffixes, yes_id, no_id, no_id)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(margins, labels)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            steps_done += 1
            bar.update(1)
            recent = sum(losses[-LOG_EVERY:]) / len(losses[-LOG_EVERY:])
            bar.set_postfix(loss=f"{recent:.3f}")
            if not config.show_progress and steps_done % LOG_EVERY == 0:
                log.info(
                    "recommender training",
                    extra={"step": steps_done, "loss": round(recent, 4), "seconds": round(time.monotonic() - started)},
                )
    bar.close()
    seconds = time.monotonic() - started
    dev_scores = score_visits(model, base, fmt, dev, config.show_progress) if dev else []
    threshold, metrics = calibrate_threshold(dev_scores, config.max_size_ratio)
    tail = losses[-50:]
    return TrainOutcome(
        model=model,
        threshold=threshold,
        dev_metrics=metrics,
        dev_scores=dev_scores,
        seconds=seconds,
        steps=steps_done,
        examples=sum(len(g) for g in groups),
        positives=sum(y for g in groups for _, y in g),
        final_loss=sum(tail) / len(tail) if tail else float("nan"),
    )


def save_adapter(model: Any, out_dir: Path, base_source: str) -> None:
    """Write adapter_config.json + adapter_model.safetensors; the base is named, not embedded."""
    # The folder transformers read the GGUF from differs per machine; materialize resolves the name.
    save_adapter_files(model, out_dir, base_source)
