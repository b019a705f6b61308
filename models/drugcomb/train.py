"""Train the drug-combination classifier on DrugComb: MiniLM + LoRA (top layers) + pooled MLP head.

Each training sentence contributes its gold relations and a sample of non-relations (other subsets of
its drugs); every candidate is the sentence with its drugs marked ``<< >>``, the drug tokens being the
pooling focus. Dev scores come from the exported ONNX model (``models.drugcomb.evaluate``), i.e. from
what ships. Training-time only (torch and peft come in through ``pooled_train``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.backbone import MINILM_NAME
from models.drugcomb.candidates import CLASS_LABELS, CandidateConfig, context_of, mark_with_focus, training_candidates
from models.drugcomb.data import DrugCombDoc
from models.drugcomb.decode import Strategy, decide
from models.drugcomb.evaluate import as_scored, gold_relations
from models.drugcomb.extractor import REGISTRY_NAME, DecodeConfig, candidate_inputs
from models.drugcomb.lexicon import DRUGS_FILE
from models.drugcomb.pooled import InputRow, PooledTask
from models.drugcomb.pooled_train import (
    PooledHyperparameters,
    PooledModel,
    TrainExample,
    build_model,
    save_artifact,
    torch_logits,
    train_pooled,
)
from models.drugcomb.scoring import drugcomb_scores
from models.encoder_infer import softmax
from models.errors import TrainingError


@dataclass(frozen=True)
class DrugCombTrainConfig:
    """Candidate generation, decoding and training hyperparameters; recorded in the model card."""

    max_size: int = 4
    max_candidates: int = 96
    context_chars: int = 0
    max_negatives: int = 5
    max_length: int = 160
    # The DrugComb authors' greedy decoding (largest combination first, then disjoint ones) at a threshold
    # below 0.5: across four training runs it scored best on the dev split, while a 10% calibration slice
    # of the training papers picked a different decoding each run (too few relations to decide).
    threshold: float = 0.3
    strategy: Strategy = "largest_disjoint"
    top_layers: int = 1
    mlp_hidden: int = 256
    epochs: float = 10.0
    batch_size: int = 32
    learning_rate: float = 1.5e-3
    head_learning_rate: float = 3e-3
    lora_r: int = 16
    lora_alpha: int = 32
    seed: int = 13
    threads: int = 0
    time_budget_s: float = 720.0
    # A fixed step count keeps the learning-rate schedule (and so the model) independent of machine load;
    # the time budget only caps a run on a very busy machine.
    max_steps: int = 750

    def decode_config(self) -> DecodeConfig:
        return DecodeConfig(
            CandidateConfig(self.max_size, self.max_candidates, self.context_chars),
            self.max_length,
            self.threshold,
            self.strategy,
        )

    def hyperparameters(self) -> PooledHyperparameters:
        return PooledHyperparameters.of("cls_mean_focus_other", self)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_examples(docs: Sequence[DrugCombDoc], config: DrugCombTrainConfig) -> list[TrainExample]:
    rng = random.Random(config.seed)
    candidate_config = config.decode_config().candidates
    examples: list[TrainExample] = []
    for doc in docs:
        context = context_of(doc, config.context_chars)
        for members, label in training_candidates(doc, candidate_config, config.max_negatives, rng):
            text, focus, other = mark_with_focus(doc.sentence, doc.spans, members)
            examples.append(TrainExample(InputRow(text, context, focus, other), (CLASS_LABELS.index(label),)))
    return examples


STRATEGIES: tuple[Strategy, ...] = ("largest_disjoint", "non_nested")
THRESHOLDS: tuple[float, ...] = (0.5, 0.4, 0.3, 0.2)


def calibrate(
    model: PooledModel, base_dir: Path, docs: Sequence[DrugCombDoc], config: DrugCombTrainConfig
) -> tuple[DrugCombTrainConfig, dict[str, float]]:
    """Pick the decoding (strategy, threshold) with the best positive-exact F1 on held-out training papers.

    The dev split stays untouched: its scores are then an honest estimate.
    """
    candidate_config = config.decode_config().candidates
    per_doc = [candidate_inputs(doc, candidate_config) for doc in docs]
    rows = [row for _, inputs in per_doc for row in inputs]
    probs = softmax(torch_logits(model, base_dir, rows, config.max_length)) if rows else np.zeros((0, 4))
    split: list[tuple[list[tuple[int, ...]], np.ndarray]] = []
    at = 0
    for candidates, _ in per_doc:
        split.append((candidates, probs[at : at + len(candidates)]))
        at += len(candidates)
    gold = gold_relations(docs)
    scores: dict[str, float] = {}
    best = (-1.0, config)
    for strategy in STRATEGIES:
        for threshold in THRESHOLDS:
            decisions = [decide(c, p, threshold, strategy) for c, p in split]
            f1 = drugcomb_scores(gold, as_scored(docs, decisions))["f1_pos_exact"]
            scores[f"{strategy}@{threshold}"] = round(f1, 4)
            if f1 > best[0]:
                best = (f1, replace(config, strategy=strategy, threshold=threshold))
    return best[1], scores


def train_drugcomb(
    train_docs: Sequence[DrugCombDoc],
    calibration_docs: Sequence[DrugCombDoc],
    base_dir: Path,
    drugs_file: Path,
    artifact_dir: Path,
    config: DrugCombTrainConfig,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Fit, calibrate the decoding on ``calibration_docs`` (held-out training papers), and write the adapter,
    head, ``pooled_task.json`` and drugs.txt into ``artifact_dir``; return the summary."""
    if not drugs_file.is_file():
        raise TrainingError("OV-2055", f"{drugs_file} is missing; the drugcomb data folder must hold drugs.txt")
    hp = config.hyperparameters()
    examples = training_examples(train_docs, config)
    model = build_model(base_dir, len(CLASS_LABELS), hp)
    stats = train_pooled(model, base_dir, examples, _cross_entropy(), hp, show_progress)
    calibration: dict[str, float] = {}
    if calibration_docs:
        config, calibration = calibrate(model, base_dir, calibration_docs, config)
    save_artifact(model, artifact_dir, MINILM_NAME)
    write_drug_names(artifact_dir / DRUGS_FILE, drugs_file, train_docs)
    PooledTask(
        labels=list(CLASS_LABELS),
        pooling=hp.pooling,
        max_len=config.max_length,
        mlp_hidden=config.mlp_hidden,
        top_layers=config.top_layers,
        base_model=MINILM_NAME,
        extra={"registry_name": REGISTRY_NAME, "drugcomb": config.decode_config().as_dict()},
    ).write(artifact_dir)
    return {
        "train_sentences": len(train_docs),
        "train_examples": len(examples),
        "calibration_sentences": len(calibration_docs),
        "calibration_f1_pos_exact": calibration,
        "decoding": {"strategy": config.strategy, "threshold": config.threshold},
        **asdict(stats),
    }


def write_drug_names(target: Path, drugs_file: Path, docs: Sequence[DrugCombDoc], min_count: int = 3) -> int:
    """The runtime lexicon: DrugComb's drugs.txt plus drug names the training sentences mark often.

    drugs.txt alone misses common oncology drugs (cisplatin, 5-FU); the annotated spans add them. A name
    must be marked ``min_count`` times and not be a slash-joined list: single annotations include noise
    ("plus", "placebo") that would turn ordinary words into drugs.
    """
    names = {line.strip() for line in drugs_file.read_text(encoding="utf-8").splitlines() if line.strip()}
    counts = Counter(" ".join(span.text.lower().split()) for doc in docs for span in doc.spans)
    names |= {name for name, n in counts.items() if n >= min_count and "/" not in name and len(name) >= 3}
    ordered = sorted(names, key=str.lower)
    target.write_text("\n".join(ordered) + "\n", encoding="utf-8")
    return len(ordered)


def _cross_entropy() -> Any:
    import torch

    def loss(logits: Any, targets: Any) -> Any:
        return torch.nn.functional.cross_entropy(logits, targets[:, 0])

    return loss
