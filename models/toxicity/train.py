"""Train the radiotherapy toxicity classifier: MiniLM + LoRA (top layers) + pooled MLP, one row per sentence.

Each sentence of a note teaches every symptom of the list at once: a 3-way status softmax per symptom
(present / absent in the sentence that states it, as located by the truth's span; not mentioned elsewhere)
and a grade softmax that only present symptoms train. Short sentences are cheap to encode and each holds
its own evidence. Notes come in as plain records (the cohort generator lives in ``cds``). Training-time
only (torch and peft come in through ``pooled_train``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.backbone import MINILM_NAME
from models.drugcomb.pooled import InputRow, PooledTask
from models.drugcomb.pooled_train import PooledHyperparameters, TrainExample, build_model, save_artifact, train_pooled
from models.errors import TrainingError
from models.toxicity.data import ToxicityNote
from models.toxicity.extractor import REGISTRY_NAME
from models.toxicity.head import counter_from, note_windows
from models.toxicity.labels import DEFAULT_SYMPTOMS, GRADE_CLASSES, IGNORE, STATUSES, HeadLayout, grade_target


@dataclass(frozen=True)
class ToxicityTrainConfig:
    """What to learn (the symptom list) and how; recorded in the model card."""

    symptoms: tuple[str, ...] = DEFAULT_SYMPTOMS
    max_length: int = 96
    top_layers: int = 2
    mlp_hidden: int = 256
    epochs: float = 6.0
    batch_size: int = 32
    learning_rate: float = 1e-3
    head_learning_rate: float = 2e-3
    lora_r: int = 16
    lora_alpha: int = 32
    seed: int = 13
    threads: int = 0
    time_budget_s: float = 600.0
    max_steps: int = 0

    def hyperparameters(self) -> PooledHyperparameters:
        return PooledHyperparameters.of("cls_mean", self)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["symptoms"] = list(self.symptoms)
        return record


def sentence_examples(note: ToxicityNote, layout: HeadLayout, count: Any, max_tokens: int) -> list[TrainExample] | None:
    """One example per sentence window of ``note``: a symptom is present / absent in the sentence holding its
    span and not mentioned in the others. ``None`` when a mentioned symptom has no usable span."""
    windows = note_windows(note.text, count, max_tokens)
    owner: dict[str, int] = {}
    for symptom in layout.symptoms:
        truth = note.truth[symptom]
        if truth.status == "not_mentioned":
            continue
        if truth.span is None:
            return None
        start, end = truth.span
        hits = [i for i, (a, b) in enumerate(windows) if start < b and end > a]
        if not hits:
            return None
        owner[symptom] = hits[0]
    examples: list[TrainExample] = []
    for index, (a, b) in enumerate(windows):
        statuses: list[int] = []
        grades: list[int] = []
        for symptom in layout.symptoms:
            truth = note.truth[symptom]
            here = owner.get(symptom) == index
            status = truth.status if here else "not_mentioned"
            statuses.append(STATUSES.index(status))
            grades.append(grade_target(status, truth.grade))
        examples.append(TrainExample(InputRow(note.text[a:b]), tuple(statuses + grades)))
    return examples


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
    examples: list[TrainExample] = []
    used = unusable = 0
    for note in train_notes:
        found = sentence_examples(note, layout, count, config.max_length - 2)
        if found is None:
            unusable += 1
        else:
            used += 1
            examples += found
    if not examples:
        raise TrainingError(
            "OV-2054", "no training note locates its symptoms (toxicities[*].span); regenerate the cohort"
        )
    model = build_model(base_dir, layout.width, hp)
    stats = train_pooled(model, base_dir, examples, grouped_loss(layout), hp, show_progress)
    save_artifact(model, artifact_dir, MINILM_NAME)
    PooledTask(
        labels=layout.labels(),
        pooling=hp.pooling,
        max_len=config.max_length,
        mlp_hidden=config.mlp_hidden,
        top_layers=config.top_layers,
        base_model=MINILM_NAME,
        extra={
            "registry_name": REGISTRY_NAME,
            "toxicity": {"symptoms": list(layout.symptoms), "statuses": list(STATUSES), "grades": list(GRADE_CLASSES)},
        },
    ).write(artifact_dir)
    return {
        "train_notes": used,
        "train_notes_without_spans": unusable,
        "train_sentences": len(examples),
        **asdict(stats),
    }
