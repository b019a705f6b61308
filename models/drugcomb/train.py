"""Train the drug-combination classifier on DrugComb: MiniLM + LoRA over marked candidate subsets.

Each training sentence contributes its gold relations and a sample of non-relations (other subsets of its
drugs); dev F1 is computed with the published scorer on the full candidate sets of the dev sentences.
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

import numpy as np

from models.drugcomb.candidates import CLASS_LABELS, CandidateConfig, context_of, mark_sentence, training_candidates
from models.drugcomb.data import DrugCombDoc
from models.drugcomb.decode import Strategy, decide
from models.drugcomb.encoding import softmax
from models.drugcomb.extractor import REGISTRY_NAME, DecodeConfig, candidate_inputs
from models.drugcomb.lexicon import DRUGS_FILE
from models.drugcomb.lora_train import (
    LoraHyperparameters,
    Progress,
    TrainExample,
    build_lora_classifier,
    save_adapter,
    torch_logits,
    train_lora_classifier,
)
from models.drugcomb.scoring import ScoredRelation, drugcomb_scores
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
    threads: int = 2
    time_budget_s: float = 660.0
    max_steps: int = 0

    def decode_config(self) -> DecodeConfig:
        return DecodeConfig(
            CandidateConfig(self.max_size, self.max_candidates, self.context_chars),
            self.max_length, self.threshold, self.strategy,
        )

    def hyperparameters(self) -> LoraHyperparameters:
        return LoraHyperparameters(
            lora_r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
            learning_rate=self.learning_rate, epochs=self.epochs, batch_size=self.batch_size,
            max_length=self.max_length, seed=self.seed, threads=self.threads,
            time_budget_s=self.time_budget_s, max_steps=self.max_steps,
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
            examples.append(TrainExample(mark_sentence(doc.sentence, doc.spans, members), context, (CLASS_LABELS.index(label),)))
    return examples


def gold_relations(docs: Sequence[DrugCombDoc]) -> list[ScoredRelation]:
    return [ScoredRelation(d.doc_id, frozenset(r.span_ids), r.label) for d in docs for r in d.relations]


def predicted_relations(
    docs: Sequence[DrugCombDoc], per_doc: Sequence[tuple[Sequence[tuple[int, ...]], np.ndarray]], threshold: float, strategy: Strategy
) -> list[ScoredRelation]:
    """Decoded relations with span ids (what the scorer compares with the gold)."""
    out: list[ScoredRelation] = []
    for doc, (candidates, probs) in zip(docs, per_doc, strict=True):
        for decision in decide(candidates, probs, threshold, strategy):
            ids = frozenset(doc.spans[i].span_id for i in decision.members)
            out.append(ScoredRelation(doc.doc_id, ids, decision.label))
    return out


def train_drugcomb(
    train_docs: Sequence[DrugCombDoc],
    dev_docs: Sequence[DrugCombDoc],
    base_dir: Path,
    drugs_file: Path | None,
    artifact_dir: Path,
    config: DrugCombTrainConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit, score the dev split, write the adapter + ``encoder_task.json`` (+ drugs.txt); return the summary."""
    hp = config.hyperparameters()
    examples = training_examples(train_docs, config)
    model = build_lora_classifier(base_dir, CLASS_LABELS, hp)
    loss = _cross_entropy()
    stats = train_lora_classifier(model, base_dir, examples, loss, hp, progress)
    decode_config = config.decode_config()
    per_doc: list[tuple[list[tuple[int, ...]], np.ndarray]] = []
    texts: list[str] = []
    pairs: list[str | None] = []
    spans: list[tuple[list[tuple[int, ...]], int, int]] = []
    for doc in dev_docs:
        candidates, marked, context = candidate_inputs(doc, decode_config.candidates)
        spans.append((candidates, len(texts), len(texts) + len(marked)))
        texts += marked
        pairs += [context] * len(marked)
    probs = softmax(torch_logits(model, base_dir, texts, pairs, config.max_length)) if texts else np.zeros((0, 4))
    per_doc = [(candidates, probs[a:b]) for candidates, a, b in spans]
    metrics = drugcomb_scores(gold_relations(dev_docs), predicted_relations(dev_docs, per_doc, config.threshold, config.strategy))
    save_adapter(model, artifact_dir)
    if drugs_file is not None and drugs_file.is_file():
        shutil.copy2(drugs_file, artifact_dir / DRUGS_FILE)
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
        "dev_sentences": len(dev_docs),
        "dev_candidates": len(texts),
        "steps": stats.steps,
        "train_seconds": round(stats.seconds, 1),
        "stopped_by_time_budget": stats.stopped_by_budget,
        "final_loss": round(stats.final_loss, 4),
        "dev_metrics": {k: round(v, 4) for k, v in metrics.items()},
    }


def _cross_entropy() -> Any:
    import torch

    def loss(logits: Any, targets: Any) -> Any:
        return torch.nn.functional.cross_entropy(logits, targets[:, 0])

    return loss
