"""The ``drugcomb`` model task: train on DrugComb, build, evaluate.

Training data: ``{data_dir}/drugcomb/final_train_set.jsonl`` split 80/20 by paper (PubMed URL, else doc id;
``models.drugcomb.data.is_dev``); the official test set is held out upstream and never used. Task options
(``-o key=value``): dev_fraction, strategy and threshold (the decoding; default the DrugComb authors'
largest-first greedy decoding at 0.3), calibration_fraction (0 by default; > 0 holds out that share of the
training papers to pick strategy and threshold instead: a 10% slice proved too small, its choice varied
from run to run), note_patients / notes_seed (synthetic note sentences stating combinations, added to
training so the model knows clinical phrasing), dev_note_patients / dev_notes_seed, max_negatives, max_size,
max_candidates, context_chars, threshold, epochs, batch_size, learning_rate, head_learning_rate, top_layers,
max_len, time_budget_s, max_steps, threads, seed.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from cds.errors import ConfigError
from cds.model_tasks import (
    ENCODER_TRAINING_RANGES,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SHARE,
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
from models.drugcomb import (
    CLASS_LABELS,
    REGISTRY_NAME,
    DrugCombDoc,
    DrugCombExtractor,
    load_drugcomb_extractor,
    read_jsonl,
    split_docs,
)
from models.drugcomb.build import build_drugcomb_dir
from models.drugcomb.data import docs_fingerprint, docs_from_note_records
from models.drugcomb.decode import Strategy
from models.drugcomb.evaluate import score_docs, score_notes
from models.drugcomb.train import DrugCombTrainConfig, train_drugcomb
from models.errors import DataFormatError
from models.runtime import CPU

log = logging.getLogger(__name__)

TRAIN_FILE = Path("drugcomb") / "final_train_set.jsonl"
DRUGS_FILE = Path("drugcomb") / "drugs.txt"
INT8_MAX_F1_DROP = 0.01
CALIBRATION_SALT = "drugcomb-calibration"
DEV_COPY = "drugcomb_dev.jsonl"
DEFAULTS: dict[str, float] = {
    "dev_fraction": 0.2,
    "calibration_fraction": 0.15,
    "note_patients": 40,
    "notes_seed": 5101,
    "dev_note_patients": 40,
    "dev_notes_seed": 5202,
    "max_negatives": 5,
    "max_size": 4,
    "max_candidates": 96,
    "context_chars": 0,
    "threshold": 0.3,
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": 1.5e-3,
    "head_learning_rate": 3e-3,
    "top_layers": 2,
    "max_len": 160,
    "time_budget_s": 1080,
    "max_steps": 1500,
    "threads": 0,
    "seed": 13,
}
RANGES: dict[str, OptionRange] = {
    **ENCODER_TRAINING_RANGES,
    "dev_fraction": FRACTION,
    "calibration_fraction": OptionRange(0.0, 1.0, high_open=True),  # 0: no calibration slice
    "threshold": SHARE,
    "head_learning_rate": POSITIVE,
    "max_steps": NON_NEGATIVE,  # 0: all epochs
    "max_size": OptionRange(2.0),  # a combination names two drugs at least
}
STRATEGIES: tuple[Strategy, ...] = ("largest_disjoint", "non_nested", "all")


def _option(ctx: TaskContext, key: str) -> float:
    return numeric_option(ctx, DEFAULTS, key, RANGES)


def _config(ctx: TaskContext) -> DrugCombTrainConfig:
    return DrugCombTrainConfig(
        max_size=int(_option(ctx, "max_size")),
        max_candidates=int(_option(ctx, "max_candidates")),
        context_chars=int(_option(ctx, "context_chars")),
        max_negatives=int(_option(ctx, "max_negatives")),
        max_length=int(_option(ctx, "max_len")),
        threshold=_option(ctx, "threshold"),
        strategy=_strategy(ctx),
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


def cohort_drug_names() -> dict[str, str]:
    """Name -> ingredient for the cohort's drugs, brands included: notes name drugs by brand too (Taxol)."""
    from cds.cohort.codes import DRUGS

    names = {drug: drug for drug in DRUGS}
    names.update({brand: drug for drug, info in DRUGS.items() for brand in info.brands})
    return names


def synthetic_notes(patients: int, seed: int) -> list[dict[str, Any]]:
    """Plain truth records of generated notes (the cohort's notes.jsonl format)."""
    if patients <= 0:
        return []
    from cds.cohort import generate_cohort

    return [note.to_json() for note in generate_cohort(patients, seed).notes]


def _strategy(ctx: TaskContext) -> Strategy:
    value = ctx.options.get("strategy", "largest_disjoint")
    for strategy in STRATEGIES:  # the CLI checked it up front; a caller that built ctx itself is checked here
        if value == strategy:
            return strategy
    raise ConfigError("OV-0015", f"--option strategy must be {', '.join(STRATEGIES)}, got {value!r}")


def _extractor(ctx: TaskContext, model_dir: Path, allow_int8: bool, cpu_only: bool = False) -> DrugCombExtractor:
    runtime = RuntimeConfig(
        providers=(CPU,) if cpu_only else ctx.runtime.providers, threads=ctx.runtime.threads, allow_int8=allow_int8
    )
    return load_drugcomb_extractor(model_dir, runtime, cohort_drug_names())


def train(ctx: TaskContext, data_dir: Path, artifact_out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    source = _source(data_dir)
    train_docs, dev_docs = split_docs(read_jsonl(source), _option(ctx, "dev_fraction"))
    fit_docs, calibration_docs = split_docs(train_docs, _option(ctx, "calibration_fraction"), CALIBRATION_SALT)
    note_seeds = (int(_option(ctx, "notes_seed")), int(_option(ctx, "dev_notes_seed")))
    note_docs = docs_from_note_records(synthetic_notes(int(_option(ctx, "note_patients")), note_seeds[0]))
    dev_notes = synthetic_notes(int(_option(ctx, "dev_note_patients")), note_seeds[1])
    config = _config(ctx)
    staging = artifact_out.with_name(artifact_out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("training drugcomb", extra={"sentences": len(train_docs), "dev_sentences": len(dev_docs)})
    summary = train_drugcomb(
        fit_docs + note_docs,
        calibration_docs,
        minilm_dir(),
        data_dir / DRUGS_FILE,
        staging,
        config,
        show_progress=ctx.progress,
    )
    card = ModelCard(
        name=REGISTRY_NAME,
        task="drugcomb",
        version="1",
        labels=list(CLASS_LABELS),
        base_model=MINILM_NAME,
        base_model_source=MINILM_SOURCE,
        training_data=_provenance(train_docs, dev_docs, len(note_docs), note_seeds, len(dev_notes)),
        hyperparameters={
            **config.as_dict(),
            "architecture": "MiniLM encoder, LoRA (query, key, value, intermediate.dense, output.dense) in the "
            "top layers only (frozen bottom cached during training); [CLS ; mean ; mean of the candidate's "
            "drug tokens] -> tanh MLP -> NO_COMB / POS / COMB / NEG",
            "input": "sentence with the candidate's drugs marked '<< drug >>' (others unmarked)"
            + (", [SEP] paragraph context" if config.context_chars else ""),
            "candidates": "all drug subsets of size 2..max_size (pairs first) plus the full set, capped",
            "decoding": "P(combination) >= threshold; keep the most confident, drop subsets/supersets of kept ones",
            "training": summary,
        },
    )
    write_card(staging, card)
    model_dir = ctx.models_dir / "drugcomb"
    checked = _dev_metrics(ctx, staging, model_dir, dev_docs, dev_notes)
    card = card.model_copy(update={"dev_metrics": checked["dev_metrics"], "export": checked["export"]})
    write_card(staging, card)
    shutil.rmtree(artifact_out, ignore_errors=True)
    staging.rename(artifact_out)
    final = export(ctx, artifact_out, model_dir)
    dev_copy = ctx.models_dir / DEV_COPY
    write_dev_copy(source, dev_copy, {d.doc_id for d in dev_docs})
    return {
        "artifact": str(artifact_out),
        "model_dir": str(model_dir),
        "dev_copy": str(dev_copy),
        "train": summary,
        "dev_metrics": final.dev_metrics,
        "int8": final.export.get("int8_keep"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _dev_metrics(
    ctx: TaskContext, artifact: Path, model_dir: Path, dev_docs: list[DrugCombDoc], dev_notes: list[dict[str, Any]]
) -> dict[str, Any]:
    """Build with an int8 candidate, score fp32 and int8 on the dev split, keep int8 only if it holds."""
    build_drugcomb_dir(artifact, model_dir, int8=True, threads=ctx.runtime.threads)
    fp32 = _extractor(ctx, model_dir, allow_int8=False)
    metrics: dict[str, Any] = {"dev": score_docs(fp32, dev_docs)}
    if dev_notes:
        metrics["notes_dev"] = score_notes(fp32, dev_notes)
    record: dict[str, Any] = {"int8_keep": False}
    if (model_dir / "model_int8.onnx").is_file():
        metrics["dev_int8"] = score_docs(_extractor(ctx, model_dir, allow_int8=True, cpu_only=True), dev_docs)
        drop = metrics["dev"]["f1_pos_exact"] - metrics["dev_int8"]["f1_pos_exact"]
        record = {"int8_keep": drop <= INT8_MAX_F1_DROP, "int8_f1_pos_exact_drop": round(drop, 4)}
    return {"dev_metrics": metrics, "export": record}


def _provenance(
    train_docs: list[DrugCombDoc],
    dev_docs: list[DrugCombDoc],
    note_sentences: int,
    seeds: tuple[int, int],
    dev_notes: int,
) -> list[TrainingData]:
    return [
        TrainingData(
            name="DrugComb n-ary drug combination extraction (Tiktinsky et al., NAACL 2022)",
            source="allenai/drug-combo-extraction @219717e, data/final_train_set.jsonl (official test set not used)",
            licence="MIT",
            split=f"train: {len(train_docs)} sentences (a calibration slice by paper, salt '{CALIBRATION_SALT}', "
            f"is held out only when calibration_fraction > 0), dev: {len(dev_docs)} sentences; by paper, "
            "sha256('drugcomb-dev:'+(source URL or doc_id)) < 0.2 is dev (models/drugcomb/data.py is_dev); "
            f"dev doc-id fingerprint {docs_fingerprint(dev_docs)}",
        ),
        TrainingData(
            name="OncoVigil synthetic oncology notes: sentences stating a drug combination",
            source=f"cds.cohort.generate_cohort (this repository), seed {seeds[0]}",
            licence="Apache-2.0 (generated)",
            split=f"train: {note_sentences} sentences (seed {seeds[0]}); dev: {dev_notes} notes (seed {seeds[1]}), "
            "scored on raw note text as notes_dev",
        ),
    ]


def _source(data_dir: Path) -> Path:
    source = data_dir / TRAIN_FILE
    if not source.is_file():
        raise DataFormatError("OV-2070", f"{source} does not exist; pass --data-dir with the drugcomb/ folder")
    return source


def dev_data(ctx: TaskContext, data_dir: Path, out_dir: Path) -> list[Path]:
    """The papers held out as dev (``-o dev_fraction``), lines unchanged: ``{out_dir}/drugcomb_dev.jsonl``."""
    source = _source(data_dir)
    _, dev_docs = split_docs(read_jsonl(source), _option(ctx, "dev_fraction"))
    out = out_dir / DEV_COPY
    write_dev_copy(source, out, {d.doc_id for d in dev_docs})
    return [out]


def write_dev_copy(source: Path, out: Path, dev_ids: set[str]) -> int:
    """The dev sentences, unchanged, in DrugComb format (for ``oncovigil eval drugcomb --data OUT``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = [
        line
        for line in source.read_text(encoding="utf-8").split("\n")  # not splitlines(): U+2028 is valid in JSON
        if line.strip() and json.loads(line)["doc_id"] in dev_ids
    ]
    out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return len(kept)


def export(ctx: TaskContext, artifact_dir: Path, model_dir: Path) -> ModelCard:
    return export_pooled(build_drugcomb_dir, ctx, artifact_dir, model_dir)


def evaluate(ctx: TaskContext, data: Path, model_dir: Path) -> dict[str, Any]:
    docs = read_jsonl(data)  # before the model: a bad file is refused without loading it
    return score_docs(_extractor(ctx, model_dir, allow_int8=ctx.runtime.allow_int8), docs)


TASK = TaskSpec(
    text_option_keys=frozenset({"strategy"}),
    option_keys=frozenset({*DEFAULTS, "strategy"}),
    option_ranges=RANGES,
    text_option_choices={"strategy": STRATEGIES},
    eval_data=EvalData(folder=False, expected="a DrugComb-format .jsonl file"),
    name="drugcomb",
    train=train,
    export=export,
    evaluate=evaluate,
    dev_data=dev_data,
    headline_metrics=("dev.f1_pos_exact", "dev.f1_any_exact", "notes_dev.f1_labelled"),
    hf_task="text-classification",
    description="n-ary drug combinations in a sentence: POS (effective), COMB (given together), NEG",
)
