"""Train the drug-combination classifier on DrugComb: MiniLM + LoRA over marked candidate subsets.

Each training sentence contributes its gold relations and a sample of non-relations (other subsets of its
drugs).
Training-time only (torch and peft come in through ``lora_train``).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.drugcomb.candidates import CLASS_LABELS, CandidateConfig, context_of, mark_sentence, training_candidates
from models.drugcomb.data import DrugCombDoc
from models.drugcomb.decode import Strategy
from models.drugcomb.extractor import REGISTRY_NAME, DecodeConfig
from models.drugcomb.lexicon import DRUGS_FILE
from models.drugcomb.lora_train import (
    LoraHyperparameters,
    Progress,
    TrainExample,
    build_lora_classifier,
    save_adapter,
    train_lora_classifier,
)
from models.encoder_train import TASK_FILE


@dataclass(frozen=True)
class DrugCombTrainConfig:
    """Candidate generation, decoding and LoRA hyperparameters; recorded in the model card."""

    max_size: int = 4
    max_candidates: int = 96
    context_chars: int = 0
    max_negatives: int = 8
    max_length: int = 192
    threshold: float = 0.5
    strategy: Strategy = "non_nested"
    epochs: float = 3.0
    batch_size: int = 16
    learning_rate: float = 1e-3
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    seed: int = 13
    threads: int = 0
    time_budget_s: float = 660.0
    max_steps: int = 0

    def decode_config(self) -> DecodeConfig:
        return DecodeConfig(
            CandidateConfig(self.max_size, self.max_candidates, self.context_chars),
            self.max_length,
            self.threshold,
            self.strategy,
        )

    def hyperparameters(self) -> LoraHyperparameters:
        return LoraHyperparameters(
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            max_length=self.max_length,
            seed=self.seed,
            threads=self.threads,
            time_budget_s=self.time_budget_s,
            max_steps=self.max_steps,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_examples(docs: Sequence[DrugCombDoc], config: DrugCombTrainConfig) -> list[TrainExample]:
    rng = random.Random(config.seed)
    candidate_config = config.decode_config().candidates
    examples: list[TrainExample] = []
    for doc in docs:
        context = context_of(doc, config.context_chars)
        for members, label in training_candidates(doc, candidate_config, config.max_negatives, rng):
            examples.append(
                TrainExample(mark_sentence(doc.sentence, doc.spans, members), context, (CLASS_LABELS.index(label),))
            )
    return examples


def train_drugcomb(
    train_docs: Sequence[DrugCombDoc],
    base_dir: Path,
    drugs_file: Path | None,
    artifact_dir: Path,
    config: DrugCombTrainConfig,
    progress: Progress | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Fit and write the adapter + ``encoder_task.json`` (+ drugs.txt) into ``artifact_dir``; return the summary.

    Dev scores come from the exported ONNX model (``models.drugcomb.evaluate``), i.e. from what ships.
    """
    hp = config.hyperparameters()
    examples = training_examples(train_docs, config)
    model = build_lora_classifier(base_dir, CLASS_LABELS, hp)
    loss = _cross_entropy()
    stats = train_lora_classifier(model, base_dir, examples, loss, hp, progress, show_progress)
    save_adapter(model, artifact_dir)
    if drugs_file is not None and drugs_file.is_file():
        shutil.copy2(drugs_file, artifact_dir / DRUGS_FILE)
    decode_config = config.decode_config()
    task = {
        "kind": "text-classification",
        "labels": list(CLASS_LABELS),
        "max_len": config.max_length,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "registry_name": REGISTRY_NAME,
        "drugcomb": decode_config.as_dict(),
    }
    (artifact_dir / TASK_FILE).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
    return {
        "train_sentences": len(train_docs),
        "train_examples": len(examples),
        "steps": stats.steps,
        "train_seconds": round(stats.seconds, 1),
        "stopped_by_time_budget": stats.stopped_by_budget,
        "final_loss": round(stats.final_loss, 4),
    }


def _cross_entropy() -> Any:
    import torch

    def loss(logits: Any, targets: Any) -> Any:
        return torch.nn.functional.cross_entropy(logits, targets[:, 0])

    return loss
