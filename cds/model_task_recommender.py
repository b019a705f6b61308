"""The ``recommender`` model task: LAMO-style LoRA on SmolLM2-135M-Instruct; train, build, evaluate.

Training data: encounter-level visits from ``{data_dir}/synthea_bulk_10`` (``cds.recommender_visits``; the
candidates of a Synthea visit are every drug ordered anywhere in that export; dev = 20% of visits by a hash
of the encounter id) and visits of a synthetic oncology cohort generated with ``cohort_seed`` (dev = 20% of
its patients by a hash of the patient id). The training seed must differ from ``settings.cohort_seed``: the
sandbox cohort is the unseen evaluation set. The threshold is calibrated on the cohort dev split and stored
in recommender.json; the baselines are fitted on the training split and shipped as baselines.json.
Task options (``-o key=value``): max_steps, max_seconds, learning_rate, max_candidates, negative_ratio,
lora_r, cohort_patients, cohort_seed, synthea (0/1), dev_fraction, threads, seed, int8 (0/1), base
("smollm2" or a Hugging Face causal-LM folder), phenotype_variants (0/1, off) and phenotype_share: also train
on cohort visits as a site whose coded diagnosis is generic and whose tumour phenotype (stage, HER2) comes from
the notes (``cds.recommender_tumour``). The dev report always scores those variants of the dev visits
(``cohort_dev_phenotype``), and so does ``eval recommender`` (``phenotype_variants``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cds.errors import ConfigError
from cds.formulary import Formulary, default_formulary
from cds.jsonl_files import write_jsonl
from cds.model_tasks import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SHARE,
    EvalData,
    OptionRange,
    TaskContext,
    TaskSpec,
    artifact_fingerprint,
    numeric_option,
)
from cds.recommender_eval import calibrate_warning_threshold, contract_report
from cds.recommender_tumour import is_variant, phenotype_of, phenotype_variant, with_phenotype_variants
from cds.recommender_visits import synthea_visits
from models import ModelCard, read_card, write_card
from models.card import TrainingData
from models.recommender import REGISTRY_NAME, load_recommender
from models.recommender.artifact import RecommenderSettings, write_settings
from models.recommender.base import SMOLLM2, SMOLLM2_NAME, SMOLLM2_SOURCE
from models.recommender.baselines import BASELINES_FILE, Baselines, fit_baselines, read_baselines, write_baselines
from models.recommender.visits import TrainingVisit, read_visits

log = logging.getLogger(__name__)

DEFAULTS: dict[str, float] = {
    "max_steps": 300,
    "max_seconds": 3600,
    "learning_rate": 1e-3,
    "max_candidates": 8,
    "negative_ratio": 1.0,
    "lora_r": 8,
    "cohort_patients": 240,
    "cohort_seed": 101,
    "synthea": 1,
    "dev_fraction": 0.2,
    "threads": 0,
    "seed": 13,
    "int8": 1,
    "phenotype_variants": 0,
    "phenotype_share": 1 / 3,
}
RANGES: dict[str, OptionRange] = {
    "dev_fraction": FRACTION,
    "phenotype_share": SHARE,
    "threads": NON_NEGATIVE,
    "learning_rate": POSITIVE,
    "max_steps": AT_LEAST_ONE,  # the steps alone end training here, so 0 would ship the untrained base
}


def _option(ctx: TaskContext, key: str) -> float:
    return numeric_option(ctx, DEFAULTS, key, RANGES)


def is_dev(key: str, fraction: float) -> bool:
    digest = hashlib.sha256(f"oncovigil-recommender:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def _split(
    visits: Sequence[TrainingVisit], fraction: float, by_group: bool
) -> tuple[list[TrainingVisit], list[TrainingVisit]]:
    train: list[TrainingVisit] = []
    dev: list[TrainingVisit] = []
    for visit in visits:
        (dev if is_dev(visit.group if by_group else visit.visit_id, fraction) else train).append(visit)
    return train, dev


def cohort_visits(patients: int, seed: int) -> list[TrainingVisit]:
    if patients <= 0:
        return []
    from cds.cohort import generate_cohort

    return [TrainingVisit.from_json(v.to_json()) for v in generate_cohort(patients, seed).visits]


def dev_data(ctx: TaskContext, data_dir: Path, out_dir: Path) -> list[Path]:
    """The dev visits ``train`` scores, for ``eval recommender --data``: the training cohort's held-out patients
    (``recommender_dev_visits.jsonl``) and, with ``-o synthea=1`` and the Synthea folder present, the held-out
    Synthea visits (``recommender_dev_synthea_visits.jsonl``)."""
    fraction = _option(ctx, "dev_fraction")
    visits = cohort_visits(int(_option(ctx, "cohort_patients")), int(_option(ctx, "cohort_seed")))
    _, cohort_dev = _split(visits, fraction, by_group=True)
    written = [_write_visits(out_dir / "recommender_dev_visits.jsonl", cohort_dev)]
    synthea = synthea_training_visits(data_dir) if _option(ctx, "synthea") else []
    if synthea:
        _, synthea_dev = _split(synthea, fraction, by_group=False)
        written.append(_write_visits(out_dir / "recommender_dev_synthea_visits.jsonl", synthea_dev))
    return written


def _write_visits(path: Path, visits: Sequence[TrainingVisit]) -> Path:
    write_jsonl(path, (v.to_json() for v in visits))
    return path


def synthea_training_visits(data_dir: Path) -> list[TrainingVisit]:
    folder = data_dir / "synthea_bulk_10"
    if not folder.is_dir():
        return []
    visits = synthea_visits(folder, default_formulary())
    vocabulary = tuple(sorted({d for v in visits for d in v.prescribed}))
    return [replace(v, candidates=vocabulary, group=v.visit_id) for v in visits]


def phenotype_variants(visits: Sequence[TrainingVisit]) -> list[TrainingVisit]:
    """Every visit with a staged cancer as its phenotype variant (generic site code, tumour in the notes)."""
    return [v for v in (phenotype_variant(visit, share=1.0) for visit in visits) if v is not None]


def biomarker_sensitivity(
    visits: Sequence[TrainingVisit], scores: Sequence[dict[str, float]]
) -> dict[str, dict[str, float | int]]:
    """Mean P(yes) of the anti-HER2 drugs on phenotype variants, by the HER2 phrase of the phenotype line.

    The variants' coded condition says only "breast cancer": a gap between the two means is the model
    reading the tumour phenotype.
    """
    found: dict[str, list[float]] = {}
    for visit, row in zip(visits, scores, strict=True):
        markers = [p for p in phenotype_of(visit.patient.history) if p.lower().startswith("her2")]
        if not is_variant(visit) or not markers:
            continue
        for drug in ("trastuzumab", "pertuzumab"):
            if drug in row:
                found.setdefault(markers[0], []).append(row[drug])
    return {k: {"mean_p_yes": round(sum(v) / len(v), 4), "scores": len(v)} for k, v in sorted(found.items())}


def phenotype_report(
    variants: Sequence[TrainingVisit],
    scores: Sequence[dict[str, float]],
    threshold: float,
    baselines: Baselines,
    formulary: Formulary,
    warning_threshold: float | None,
) -> dict[str, Any]:
    """The contract report on phenotype variants, with their count and the anti-HER2 separation."""
    report = contract_report(variants, scores, threshold, baselines, formulary, warning_threshold)
    return {**report, "visits": len(variants), "her2_sensitivity": biomarker_sensitivity(variants, scores)}


def train(ctx: TaskContext, data_dir: Path, artifact_out: Path) -> dict[str, Any]:
    from models.recommender.base import load_base
    from models.recommender.training import RecommenderTrainConfig, save_adapter, score_visits, train_recommender

    started = time.perf_counter()
    fraction = _option(ctx, "dev_fraction")
    seed = int(_option(ctx, "cohort_seed"))
    if seed == ctx.settings.cohort_seed:
        raise ConfigError(
            "OV-0019",
            f"cohort_seed {seed} is the sandbox cohort's seed (the unseen evaluation set); choose another",
        )
    co_train, co_dev = _split(cohort_visits(int(_option(ctx, "cohort_patients")), seed), fraction, by_group=True)
    if _option(ctx, "phenotype_variants"):
        co_train = with_phenotype_variants(co_train, _option(ctx, "phenotype_share"))
    syn = synthea_training_visits(data_dir) if _option(ctx, "synthea") else []
    syn_train, syn_dev = _split(syn, fraction, by_group=False)
    config = RecommenderTrainConfig(
        base=ctx.options.get("base", SMOLLM2),
        lora_r=int(_option(ctx, "lora_r")),
        lora_alpha=2 * int(_option(ctx, "lora_r")),
        learning_rate=_option(ctx, "learning_rate"),
        max_steps=int(_option(ctx, "max_steps")),
        max_seconds=_option(ctx, "max_seconds"),
        max_candidates=int(_option(ctx, "max_candidates")),
        negative_ratio=_option(ctx, "negative_ratio"),
        seed=int(_option(ctx, "seed")),
        threads=int(_option(ctx, "threads")),
        show_progress=ctx.progress,
    )
    train_set = co_train + syn_train
    baselines = fit_baselines(train_set)
    log.info("training recommender", extra={"visits": len(train_set), "dev": len(co_dev) + len(syn_dev)})
    base = load_base(config.base)
    outcome = train_recommender(base, train_set, co_dev, config)
    formulary = default_formulary()
    co_scores = [dict(s.scores) for s in outcome.dev_scores]
    warn_at, _ = calibrate_warning_threshold(co_dev, co_scores, outcome.threshold, formulary)
    dev_metrics: dict[str, Any] = {
        "threshold": outcome.threshold,
        "warning_threshold": warn_at,
        "calibrated_on": "cohort_dev",
        "cohort_dev": contract_report(co_dev, co_scores, outcome.threshold, baselines, formulary, warn_at),
    }
    variants = phenotype_variants(co_dev)
    if variants:
        variant_scores = [dict(s.scores) for s in score_visits(outcome.model, base, config.prompt, variants)]
        dev_metrics["cohort_dev_phenotype"] = phenotype_report(
            variants, variant_scores, outcome.threshold, baselines, formulary, warn_at
        )
    if syn_dev:
        syn_scores = score_visits(outcome.model, base, config.prompt, syn_dev, ctx.progress)
        dev_metrics["synthea_dev"] = contract_report(
            syn_dev, [dict(s.scores) for s in syn_scores], outcome.threshold, baselines, formulary, warn_at
        )
    staging = artifact_out.with_name(artifact_out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    save_adapter(outcome.model, staging, config.base)
    settings = RecommenderSettings(
        threshold=outcome.threshold, base=config.base, prompt=config.prompt, warning_threshold=warn_at
    )
    write_settings(staging, settings)
    write_baselines(staging, baselines)
    sizes = {
        "cohort_train": len(co_train),
        "cohort_dev": len(co_dev),
        "synthea_train": len(syn_train),
        "synthea_dev": len(syn_dev),
        "examples": outcome.examples,
        "positives": outcome.positives,
    }
    card = ModelCard(
        name=REGISTRY_NAME,
        task="recommender",
        version="1",
        labels=["no", "yes"],
        base_model=SMOLLM2_NAME if config.base == SMOLLM2 else config.base,
        base_model_source=SMOLLM2_SOURCE if config.base == SMOLLM2 else "user folder",
        training_data=_provenance(seed, int(_option(ctx, "cohort_patients")), fraction),
        hyperparameters={
            **config.as_record(),
            "prompt": config.prompt.to_json(),
            "train_sizes": sizes,
            "train_seconds": round(outcome.seconds, 1),
            "train_steps": outcome.steps,
            "final_loss": round(outcome.final_loss, 4),
        },
        dev_metrics=dev_metrics,
    )
    write_card(staging, card)
    del outcome, base
    shutil.rmtree(artifact_out, ignore_errors=True)
    staging.rename(artifact_out)
    model_dir = ctx.models_dir / "recommender"
    final = export(ctx, artifact_out, model_dir)
    return {
        "artifact": str(artifact_out),
        "artifact_bytes": sum(p.stat().st_size for p in artifact_out.iterdir() if p.is_file()),
        "model_dir": str(model_dir),
        "sizes": sizes,
        "train_seconds": card.hyperparameters["train_seconds"],
        "dev_metrics": dev_metrics,
        "export": final.export,
        "seconds": round(time.perf_counter() - started, 1),
    }


def export(ctx: TaskContext, artifact_dir: Path, model_dir: Path) -> ModelCard:
    """Materialise the artifact (or a user's adapter / causal-LM folder) into ``model_dir`` with its card."""
    from models.recommender.export import build_recommender_dir

    extra = [artifact_dir / BASELINES_FILE] if (artifact_dir / BASELINES_FILE).is_file() else []
    report, settings = build_recommender_dir(
        artifact_dir, model_dir, extra_files=extra, int8=bool(_option(ctx, "int8")), threads=ctx.runtime.threads
    )
    has_card = (artifact_dir / "model_card.json").is_file()
    card = (
        read_card(artifact_dir)
        if has_card
        else ModelCard(
            name=REGISTRY_NAME,
            task="recommender",
            version="user",
            base_model=settings.base,
            base_model_source=str(artifact_dir),
        )
    )
    record = {**report.as_record(), "threshold": settings.threshold, "warning_threshold": settings.warning_threshold}
    if has_card:
        record["artifact_fingerprint"] = artifact_fingerprint(artifact_dir)
    return write_card(model_dir, card.model_copy(update={"export": record, "files": {}}))


def evaluate(ctx: TaskContext, data_path: Path, model_dir: Path) -> dict[str, Any]:
    """The evaluation contract on a visits.jsonl file (or a folder holding one)."""
    path = data_path / "visits.jsonl" if data_path.is_dir() else data_path
    visits = read_visits(path)
    if not visits:  # every figure would be a meaningless 0
        raise ConfigError("OV-0151", f"no visits in {path}; pass a visits.jsonl file with one visit per line")
    baselines = read_baselines(model_dir)
    if baselines is None:
        raise ConfigError(
            "OV-0019", f"{model_dir} has no {BASELINES_FILE}; build it from the artifact (`oncovigil models build`)"
        )
    recommender = load_recommender(model_dir, ctx.runtime)

    def scored(chosen: Sequence[TrainingVisit]) -> list[dict[str, float]]:
        return [{s.drug: s.p_yes for s in recommender.score(v.patient, v.universe)} for v in chosen]

    formulary, warn_at = default_formulary(), recommender.warning_threshold
    report = contract_report(visits, scored(visits), recommender.threshold, baselines, formulary, warn_at)
    variants = phenotype_variants(visits)
    if variants:
        # the same visits as a site whose coded diagnosis is generic and whose tumour is in the notes
        report["phenotype_variants"] = phenotype_report(
            variants, scored(variants), recommender.threshold, baselines, formulary, warn_at
        )
    return report


def _provenance(seed: int, patients: int, fraction: float) -> list[TrainingData]:
    return [
        TrainingData(
            name="Synthea synthetic patients, FHIR R4 bulk export (13 patients)",
            source="smart-on-fhir/sample-bulk-fhir-datasets, branch 10-patients @8aef4e0",
            licence="CC0",
            split=f"dev: encounters with sha256('oncovigil-recommender:'+id) < {fraction} of 2^32",
        ),
        TrainingData(
            name="OncoVigil synthetic oncology cohort (visits.jsonl)",
            source=f"cds.cohort.generate_cohort({patients}, seed={seed})",
            licence="generated by this project (Apache-2.0)",
            split=f"dev: patients with sha256('oncovigil-recommender:'+patient_id) < {fraction} of 2^32",
        ),
    ]


TASK = TaskSpec(
    text_option_keys=frozenset({"base"}),
    option_keys=frozenset({*DEFAULTS, "base"}),
    option_ranges=RANGES,
    eval_data=EvalData(expected="a visits.jsonl file or the folder holding it"),
    name="recommender",
    train=train,
    export=export,
    evaluate=evaluate,
    dev_data=dev_data,
    headline_metrics=("cohort_dev.model.f1", "cohort_dev.baselines.cooccurrence.f1", "synthea_dev.model.f1"),
    hf_task="text-generation-with-past",
    description="LAMO-style yes/no medication recommender (SmolLM2-135M-Instruct + LoRA)",
)
