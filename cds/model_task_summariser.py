"""The ``summaries`` model task: per-drug ADE summaries, SFT then DPO; train, build, evaluate.

Data (``cds.summary_data``): grouped drug records from ADE-Corpus-V2 (dev: 20 % of drugs by a hash of the
name) and from a synthetic cohort generated with ``cohort_seed`` (dev: a second cohort, ``dev_cohort_seed``);
neither seed may be the sandbox cohort's. References come from the deterministic narrative, preference pairs
from ``models.summariser.pairs``. Default architecture: SmolLM2-135M-Instruct + LoRA (``arch=causal``);
``arch=seq2seq`` trains a small T5 from scratch (the fallback, and what the tests run). The artifact keeps
both adapters (``sft/`` and ``dpo/``) so the eval contract can show the same figures before and after DPO.
Task options (``-o key=value``): arch, sft_steps, dpo_steps, batch_size, lora_r, lora_layers, sft_lr, dpo_lr,
beta, sft_weight, cohort_patients, cohort_seed, dev_cohort_seed, dev_fraction, dev_groups, corpus (0/1),
threads, seed, max_seconds, base, d_model, layers, max_new_tokens, resume_sft (an SFT adapter folder:
DPO only, e.g. to retune beta or the learning rate).
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

from cds.errors import ConfigError
from cds.model_tasks import (
    ARTIFACTS_ROOT,
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    EvalData,
    OptionRange,
    TaskContext,
    TaskSpec,
    artifact_fingerprint,
    numeric_option,
)
from cds.summarise import MODEL_DIR
from cds.summary_data import cohort_groups, corpus_groups, ctcae_vocabulary, is_dev_drug, write_eval_file
from models import ModelCard, read_card, write_card
from models.card import TrainingData
from models.summariser import DrugGroup, check_summary, narrate
from models.summariser.graph import LAST_POSITION

log = logging.getLogger(__name__)

REGISTRY_NAME = "summariser.v1"
DEFAULTS: dict[str, float] = {
    "sft_steps": 80,
    "dpo_steps": 30,
    "batch_size": 4,
    "lora_r": 8,
    "lora_layers": 8,
    "sft_lr": 2e-3,
    "dpo_lr": 5e-4,
    "beta": 0.1,
    "sft_weight": 0.2,
    "cohort_patients": 160,
    "cohort_seed": 101,
    "dev_cohort_seed": 202,
    "dev_patients": 60,
    "dev_fraction": 0.2,
    "dev_groups": 60,
    "corpus": 1,
    "threads": 2,
    "seed": 13,
    "max_seconds": 1500,
    "d_model": 128,
    "layers": 2,
    "max_new_tokens": 160,
}
RANGES: dict[str, OptionRange] = {
    "dev_fraction": FRACTION,
    "threads": NON_NEGATIVE,
    "batch_size": AT_LEAST_ONE,
    "sft_lr": POSITIVE,
    "dpo_lr": POSITIVE,
}


def _option(ctx: TaskContext, key: str) -> float:
    return numeric_option(ctx, DEFAULTS, key, RANGES)


def _faithful(groups: list[DrugGroup], vocabulary: list[str]) -> list[DrugGroup]:
    # a record whose own reference the guard cannot verify (a corpus event that reads like another) is no
    # training signal and no fair test
    return [g for g in groups if g.terms and check_summary(narrate(g), g, vocabulary).passed]


def build_splits(ctx: TaskContext, data_dir: Path) -> tuple[list[DrugGroup], list[DrugGroup], list[str]]:
    """(train, dev, vocabulary): dev holds ``dev_groups`` records, half corpus and half cohort when both exist."""
    seeds = {int(_option(ctx, "cohort_seed")), int(_option(ctx, "dev_cohort_seed"))}
    if ctx.settings.cohort_seed in seeds:
        raise ConfigError(
            "OV-0120",
            f"cohort seed {ctx.settings.cohort_seed} is the sandbox cohort's (the unseen evaluation set); "
            "choose another",
        )
    vocabulary = ctcae_vocabulary(data_dir)
    fraction = _option(ctx, "dev_fraction")
    corpus = corpus_groups(data_dir) if _option(ctx, "corpus") and (data_dir / "ade_corpus_v2").is_dir() else []
    vocabulary = sorted({*vocabulary, *(t.term for g in corpus for t in g.terms)})
    corpus = _faithful(corpus, vocabulary)
    co_train = _faithful(
        cohort_groups(int(_option(ctx, "cohort_patients")), int(_option(ctx, "cohort_seed"))), vocabulary
    )
    co_dev = _faithful(
        cohort_groups(int(_option(ctx, "dev_patients")), int(_option(ctx, "dev_cohort_seed")), (365,)), vocabulary
    )
    train = [g for g in corpus if not is_dev_drug(g.drug, fraction)] + co_train
    corpus_dev = [g for g in corpus if is_dev_drug(g.drug, fraction)]
    want = int(_option(ctx, "dev_groups"))
    rng = random.Random(int(_option(ctx, "seed")))
    rng.shuffle(corpus_dev)
    co_dev = co_dev[: max(want // 2, want - len(corpus_dev))]
    dev = corpus_dev[: want - len(co_dev)] + co_dev
    if not train:
        raise ConfigError("OV-0121", f"no training records from {data_dir}; it needs ade_corpus_v2/ or cohort options")
    return train, dev, vocabulary


def train(ctx: TaskContext, data_dir: Path, artifact_out: Path) -> dict[str, Any]:
    from models.summariser.fit import FitConfig, fit_summariser

    started = time.perf_counter()
    train_set, dev_set, vocabulary = build_splits(ctx, data_dir)
    arch = ctx.options.get("arch", "causal")
    if arch not in ("causal", "seq2seq"):
        raise ConfigError("OV-0120", f"summariser option arch={arch!r}: use causal or seq2seq")
    config = FitConfig.from_options(
        arch,
        {k: _option(ctx, k) for k in DEFAULTS},
        ctx.options.get("base", "smollm2"),
        ctx.options.get("resume_sft", ""),
    )
    staging = artifact_out.with_name(artifact_out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    outcome = fit_summariser(train_set, vocabulary, staging, config)
    write_eval_file(staging / "dev.jsonl", dev_set)
    sizes = {"train_groups": len(train_set), "dev_groups": len(dev_set), "pairs": outcome.pairs}
    card = ModelCard(
        name=REGISTRY_NAME,
        task="summariser",
        version="1",
        base_model=outcome.base_name,
        base_model_source=outcome.base_source,
        training_data=_provenance(ctx),
        hyperparameters={**outcome.hyperparameters, "train_sizes": sizes},
    )
    write_card(staging, card)
    shutil.rmtree(artifact_out, ignore_errors=True)
    staging.rename(artifact_out)
    model_dir = ctx.models_dir / MODEL_DIR
    export(ctx, artifact_out, model_dir)
    metrics = evaluate(ctx, artifact_out / "dev.jsonl", model_dir)
    # the dev figures go into the artifact's card; the built directory is re-stamped, not re-exported
    write_card(artifact_out, read_card(artifact_out).model_copy(update={"dev_metrics": metrics}))
    built = read_card(model_dir)
    write_card(
        model_dir,
        built.model_copy(
            update={
                "dev_metrics": metrics,
                "export": {**built.export, "artifact_fingerprint": artifact_fingerprint(artifact_out)},
            }
        ),
    )
    return {
        "artifact": str(artifact_out),
        "model_dir": str(model_dir),
        "sizes": sizes,
        "dev_metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    }


def export(ctx: TaskContext, artifact_dir: Path, model_dir: Path) -> ModelCard:
    """Build both stages (DPO at the top, SFT under ``sft/``) from the artifact, or a user's folder."""
    from models.summariser.build import build_summariser_dir

    report = build_summariser_dir(artifact_dir, model_dir, threads=ctx.runtime.threads)
    has_card = (artifact_dir / "model_card.json").is_file()
    card = (
        read_card(artifact_dir)
        if has_card
        else ModelCard(
            name=REGISTRY_NAME,
            task="summariser",
            version="user",
            base_model=str(artifact_dir),
            base_model_source="user folder",
        )
    )
    record = dict(report)
    if has_card:
        record["artifact_fingerprint"] = artifact_fingerprint(artifact_dir)
    return write_card(model_dir, card.model_copy(update={"export": record, "files": {}}))


def evaluate(ctx: TaskContext, data_path: Path, model_dir: Path) -> dict[str, Any]:
    """The eval contract: each line ``{"record": ..., "reference": ...}``; SFT and DPO side by side."""
    from cds.summarise import evaluate_dir

    path = data_path / "dev.jsonl" if data_path.is_dir() else data_path
    return evaluate_dir(path, model_dir, ctx.runtime)


def dev_data(ctx: TaskContext, data_dir: Path, out_dir: Path) -> list[Path]:
    """The dev groups the card was scored on, as ``train`` stored them in the artifact (``data_dir`` is not
    read): ``{out_dir}/summaries_dev.jsonl``, for ``eval summaries --data``."""
    source = ctx.artifact(TASK) / "dev.jsonl"
    if not source.is_file():
        raise ConfigError("OV-0123", f"{source} does not exist; the summaries artifact keeps its dev groups there")
    out = out_dir / "summaries_dev.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out)
    return [out]


def _provenance(ctx: TaskContext) -> list[TrainingData]:
    return [
        TrainingData(
            name="ADE-Corpus-V2 drug -> adverse effect relations (DRUG-AE.rel), grouped per drug",
            source="Gurulingappa et al. 2012, via ../shared/data/ade_corpus_v2",
            licence="CC BY 4.0 (as distributed upstream)",
            split=f"dev: drugs with sha256('oncovigil-summariser:'+drug) < {_option(ctx, 'dev_fraction')} of 2^32",
        ),
        TrainingData(
            name="OncoVigil synthetic oncology cohort, true ADEs grouped per drug and period (90/182/365 days)",
            source=f"cds.cohort.generate_cohort({int(_option(ctx, 'cohort_patients'))}, "
            f"seed={int(_option(ctx, 'cohort_seed'))})",
            licence="generated by this project (Apache-2.0)",
            split=f"dev: a second cohort, seed {int(_option(ctx, 'dev_cohort_seed'))}, 365-day periods",
        ),
        TrainingData(
            name="references and preference pairs",
            source="models.summariser.narrative.narrate (deterministic) and models.summariser.pairs",
            licence="generated by this project (Apache-2.0)",
            split="pairs from the training records only",
        ),
    ]


TASK = TaskSpec(
    text_option_keys=frozenset({"arch", "base", "resume_sft"}),
    option_keys=frozenset({*DEFAULTS, "arch", "base", "resume_sft"}),
    option_ranges=RANGES,
    eval_data=EvalData(expected="a .jsonl file of grouped records or the folder holding dev.jsonl"),
    card_tasks=frozenset({"summariser"}),  # the cards `train summaries` writes say "summariser"
    name=MODEL_DIR,  # "summaries": `oncovigil eval summaries` is the evaluation contract
    artifact_dir=ARTIFACTS_ROOT / "summariser",
    train=train,
    export=export,
    evaluate=evaluate,
    dev_data=dev_data,
    headline_metrics=("rouge_l", "hallucinated_event_rate", "omitted_serious_event_rate", "guard_fallback_rate"),
    hf_task="text-generation-with-past",
    build_requires={"logits": LAST_POSITION},  # decoding reads one position: older builds paid for them all
    description="per-drug ADE summaries (SmolLM2-135M + LoRA, SFT then DPO; faithfulness guard at inference)",
)
