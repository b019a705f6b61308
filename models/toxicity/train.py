"""Train the radiotherapy toxicity classifier: MiniLM + LoRA (top layers) + pooled MLP, one row per note.

Each note teaches every symptom of the list at once: a 3-way status softmax per symptom, and a grade
softmax per symptom that only present symptoms train. Notes come in as plain records (the cohort generator
lives in ``cds``). Training-time only (torch and peft come in through ``pooled_train``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.drugcomb.pooled import InputRow, PooledTask
from models.drugcomb.pooled_train import PooledHyperparameters, TrainExample, build_model, save_artifact, train_pooled
from models.errors import TrainingError
from models.toxicity.data import ToxicityNote
from models.toxicity.extractor import REGISTRY_NAME
from models.toxicity.head import counter_from
from models.toxicity.labels import DEFAULT_SYMPTOMS, GRADE_CLASSES, IGNORE, STATUSES, HeadLayout, grade_target


@dataclass(frozen=True)
class ToxicityTrainConfig:
    """What to learn (the symptom list) and how; recorded in the model card."""

    symptoms: tuple[str, ...] = DEFAULT_SYMPTOMS
    max_length: int = 256
    top_layers: int = 2
    mlp_hidden: int = 256
    epochs: float = 10.0
    batch_size: int = 16
    learning_rate: float = 1e-3
    head_learning_rate: float = 2e-3
    lora_r: int = 16
    lora_alpha: int = 32
    seed: int = 13
    threads: int = 0
    time_budget_s: float = 600.0
    max_steps: int = 0

    def hyperparameters(self) -> PooledHyperparameters:
        return PooledHyperparameters(
            pooling="cls_mean",
            top_layers=self.top_layers,
            mlp_hidden=self.mlp_hidden,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            learning_rate=self.learning_rate,
            head_learning_rate=self.head_learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            max_length=self.max_length,
            seed=self.seed,
            threads=self.threads,
            time_budget_s=self.time_budget_s,
            max_steps=self.max_steps,
        )

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["symptoms"] = list(self.symptoms)
        return record


def note_targets(note: ToxicityNote, layout: HeadLayout) -> tuple[int, ...]:
    """Status indices for every symptom, then grade-class indices (IGNORE unless present)."""
    statuses = [STATUSES.index(note.truth[s].status) for s in layout.symptoms]
    grades = [grade_target(note.truth[s].status, note.truth[s].grade) for s in layout.symptoms]
    return tuple(statuses + grades)


def grouped_loss(layout: HeadLayout) -> Any:
    """Mean status cross-entropy over symptoms plus the grade cross-entropy of present symptoms."""
    import torch

    n, s, g = len(layout.symptoms), len(STATUSES), len(GRADE_CLASSES)

    def loss(logits: Any, targets: Any) -> Any:
        status = logits[:, : n * s].reshape(-1, s)
        grade = logits[:, n * s :].reshape(-1, g)
        status_loss = torch.nn.functional.cross_entropy(status, targets[:, :n].reshape(-1))
        grade_targets = targets[:, n:].reshape(-1)
        if bool((grade_targets != IGNORE).any()):
            grade_loss = torch.nn.functional.cross_entropy(grade, grade_targets, ignore_index=IGNORE)
        else:
            grade_loss = status_loss * 0.0
        return status_loss + grade_loss

    return loss


def _fits(notes: Sequence[ToxicityNote], count: Any, max_tokens: int) -> tuple[list[ToxicityNote], int]:
    """Notes short enough for one window (note-level labels cannot be split over windows)."""
    kept = [n for n in notes if count(n.text) <= max_tokens]
    return kept, len(notes) - len(kept)


def train_toxicity(
    train_notes: Sequence[ToxicityNote],
    base_dir: Path,
    artifact_dir: Path,
    config: ToxicityTrainConfig,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Fit and write the adapter, head and ``pooled_task.json`` into ``artifact_dir``; return the summary.

    The caller writes the model card (it knows the data provenance) and scores the dev notes with the
    exported ONNX model (``models.toxicity.evaluate``), i.e. with what ships.
    """
    from tokenizers import Tokenizer

    layout = HeadLayout(tuple(config.symptoms))
    hp = config.hyperparameters()
    counter_tok = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    counter_tok.no_truncation()
    counter_tok.no_padding()
    count = counter_from(counter_tok)
    usable, dropped = _fits(train_notes, count, config.max_length - 2)
    if not usable:
        raise TrainingError("OV-2054", "no training note fits the window; raise max_length or check the notes")
    examples = [TrainExample(InputRow(n.text), note_targets(n, layout)) for n in usable]
    model = build_model(base_dir, layout.width, hp)
    stats = train_pooled(model, base_dir, examples, grouped_loss(layout), hp, show_progress)
    save_artifact(model, artifact_dir)
    PooledTask(
        labels=layout.labels(),
        pooling=hp.pooling,
        max_len=config.max_length,
        mlp_hidden=config.mlp_hidden,
        top_layers=config.top_layers,
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        extra={
            "registry_name": REGISTRY_NAME,
            "toxicity": {"symptoms": list(layout.symptoms), "statuses": list(STATUSES), "grades": list(GRADE_CLASSES)},
        },
    ).write(artifact_dir)
    return {"train_notes": len(usable), "train_notes_too_long": dropped, **asdict(stats)}
