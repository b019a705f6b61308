"""The ``phenotype`` model task: train on generated pathology and consult notes, build, evaluate.

Training data: ``cds.cohort.phenotype.generate_phenotype_notes`` (train seed ``notes_seed``, dev notes from
``dev_notes_seed``: no note on both sides), 5 % of words misspelled at generation, ``ehr_share`` of them
EHR-style encounter notes (problem-list displays such as Synthea's, and suspicions that are no diagnosis).
Dev metrics are per-field exact match and F1, clean and with 10 % of words misspelled (``misspell_rate``),
fp32 and int8.
Task options (``-o key=value``): epochs, batch_size, learning_rate, max_len, notes, dev_notes, notes_seed,
dev_notes_seed, typo_rate, misspell_rate, ehr_share, max_steps, threads, seed, reuse_adapter.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from adapters.bulk_notes import PatientCondition, bulk_notes_and_conditions
from adapters.records import Note
from cds.cohort.phenotype import generate_phenotype_notes
from cds.errors import ConfigError
from cds.jsonl_files import write_jsonl
from cds.model_tasks import (
    ENCODER_TRAINING_RANGES,
    SHARE,
    EvalData,
    OptionRange,
    TaskContext,
    TaskSpec,
    artifact_fingerprint,
    numeric_option,
)
from models import ModelCard, RuntimeConfig, read_card, write_card
from models.ade import read_corpus
from models.backbone import MINILM_NAME, MINILM_SOURCE, minilm_dir
from models.card import TrainingData
from models.encoder_export import HIDDEN_OUTPUT
from models.encoder_train import EncoderTrainConfig, SpanExample, bio_labels, train_token_classifier
from models.phenotype import (
    ENTITY_TYPES,
    NAME,
    LabelledNote,
    PhenotypeConfig,
    PhenotypeExtractor,
    field_metrics,
    fields_from_mentions,
    misspelled,
    normalise,
    parse_record,
    read_notes,
)
from models.phenotype.build import build_phenotype_dir
from models.phenotype.training import sentence_examples
from models.runtime import CPU

log = logging.getLogger(__name__)

INT8_MAX_F1_DROP = 0.01
# A dozen notes written by hand in wordings the generator does not use: the out-of-template check.
HANDWRITTEN = Path(__file__).resolve().parent / "data" / "phenotype_handwritten.jsonl"
DEFAULTS: dict[str, float] = {
    "epochs": 3,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "max_len": 96,
    "notes": 1000,
    "dev_notes": 300,
    "notes_seed": 101,
    "dev_notes_seed": 202,
    "typo_rate": 0.05,
    "misspell_rate": 0.10,
    "ehr_share": 0.15,
    "max_steps": -1,
    "threads": 0,
    "seed": 13,
    "reuse_adapter": 0,
    "neg_sentences": 1500,
}
RANGES: dict[str, OptionRange] = {
    **ENCODER_TRAINING_RANGES,
    "typo_rate": SHARE,
    "misspell_rate": SHARE,
    "ehr_share": SHARE,
    "max_steps": OptionRange(-1.0),  # -1: the epochs decide
}
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
# A negative sentence from ADE-Corpus-V2 must not state what we tag, or it would teach the tagger to miss it.
_PHENOTYPE_WORDS = re.compile(
    r"(?i)cancer|carcinom|tumou?r|neoplas|malignan|metasta|lymphoma|sarcoma|stage|grade|receptor|her-?2|pd-?l1|"
    r"egfr|alk\b|kras|breast|lung|colon|rect|prostat|pancrea|\bcm\b|\bmm\b"
)


def _option(ctx: TaskContext, key: str) -> float:
    return numeric_option(ctx, DEFAULTS, key, RANGES)


def synthetic_records(count: int, seed: int, typo_rate: float, ehr_share: float) -> list[dict[str, Any]]:
    return [n.to_json() for n in generate_phenotype_notes(count, seed, typo_rate, ehr_share=ehr_share)]


def _dev_records(ctx: TaskContext) -> list[dict[str, Any]]:
    count, seed = int(_option(ctx, "dev_notes")), int(_option(ctx, "dev_notes_seed"))
    return synthetic_records(count, seed, 0.0, _option(ctx, "ehr_share"))


def dev_notes(ctx: TaskContext) -> list[LabelledNote]:
    records = _dev_records(ctx)
    return [parse_record(r, f"dev note {r['note_id']}") for r in records]


def score(extractor: PhenotypeExtractor, notes: Sequence[LabelledNote]) -> dict[str, Any]:
    predictions = [p.values() for p in extractor.pipe((n.text for n in notes), batch_size=32)]
    return field_metrics([n.truth for n in notes], predictions)


def score_with_misspellings(
    extractor: PhenotypeExtractor, notes: Sequence[LabelledNote], rate: float
) -> dict[str, Any]:
    """Clean and misspelled scores side by side (the robustness the model card and ``eval`` report)."""
    return {
        "clean": score(extractor, notes),
        "misspelled": {"rate": rate, **score(extractor, misspelled(notes, rate, 7))},
    }


ENCOUNTER_SLACK = timedelta(days=1)
_CANCER_WORDS = ("cancer", "carcinoma", "neoplasm", "malignant", "tumor", "lymphoma")


def condition_label(display: str | None) -> str | None:
    """Our diagnosis label of a confirmed cancer Condition ("Malignant neoplasm of breast (disorder)")."""
    text = (display or "").lower()
    if "suspected" in text or "(disorder)" not in text or not any(w in text for w in _CANCER_WORDS):
        return None
    return normalise("DX", display or "")


def synthea_diagnosis(extractor: PhenotypeExtractor, folder: Path) -> dict[str, Any]:
    """Diagnosis label of every note against the patient's confirmed cancer Conditions at the note's date.

    A note is right when it names one of the cancers the patient has by then, or none when there is none.
    "By then" allows one day: Synthea stamps a note with its encounter's start and the Condition's onset later
    in the same encounter, so the note that presents a new diagnosis is hours older than its onset (1989-04-09
    23:58 against 1989-04-10 01:18 in the sample).
    """
    return diagnosis_scores(extractor, *bulk_notes_and_conditions(folder))


def diagnosis_scores(
    extractor: PhenotypeExtractor, notes: Sequence[Note], conditions: Sequence[PatientCondition]
) -> dict[str, Any]:
    """:func:`synthea_diagnosis` on notes and Conditions already read."""
    tp = fp = fn = exact = 0
    predictions = extractor.pipe((n.text for n in notes), batch_size=16)
    for note, phenotype in zip(notes, predictions, strict=True):
        truth = {
            label
            for c in conditions
            if c.patient_id == note.patient_id
            and (label := condition_label(c.condition.display)) is not None
            and (c.condition.onset is None or note.date is None or c.condition.onset <= note.date + ENCOUNTER_SLACK)
        }
        predicted = phenotype.value("diagnosis")
        exact += int(predicted in truth if truth else predicted is None)
        tp += int(predicted is not None and predicted in truth)
        fp += int(predicted is not None and predicted not in truth)
        fn += int(bool(truth) and predicted not in truth)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "notes": len(notes),
        "notes_with_cancer": tp + fn,
        "diagnosis": {
            "exact_match": round(exact / len(notes), 4) if notes else 0.0,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "tp": tp,
            "fp": fp,
            "fn": fn,
        },
    }


def negative_sentences(data_dir: Path, count: int) -> list[SpanExample]:
    """All-``O`` examples: ADE-Corpus-V2 sentences without an ADE that name no tumour fact (fixed sample).

    Generated notes alone teach the tagger that every sentence holds a fact; real notes are mostly other text.
    """
    corpus = data_dir / "ade_corpus_v2"
    if count <= 0 or not corpus.is_dir():
        return []
    pool = sorted({s.text for s in read_corpus(corpus) if not s.pairs and not _PHENOTYPE_WORDS.search(s.text)})
    return [SpanExample(text) for text in random.Random(13).sample(pool, min(count, len(pool)))]


def tune_threshold(extractor: PhenotypeExtractor, notes: Sequence[LabelledNote]) -> dict[str, Any]:
    """The lowest mention confidence threshold whose dev micro F1 is within 0.002 of the best.

    Scored on the misspelled dev notes (the harder case). Generated notes rarely tell thresholds apart, and a
    high one costs recall on wordings the generator never used (the hand-written notes: micro F1 0.93 at 0,
    0.82 at 0.8), so ties go to recall; stray tags on unfamiliar text are kept out by the negative training
    sentences instead.
    """
    texts = [n.text for n in notes]
    mentions = extractor.tag(texts)
    scores = {}
    for threshold in THRESHOLDS:
        predictions = [fields_from_mentions(t, m, threshold).values() for t, m in zip(texts, mentions, strict=True)]
        scores[threshold] = field_metrics([n.truth for n in notes], predictions)["micro"]["f1"]
    best = max(scores.values())
    chosen = min(t for t, f1 in scores.items() if f1 >= best - 0.002)
    return {"min_confidence": chosen, "micro_f1_by_threshold": {str(k): v for k, v in scores.items()}}


def train(ctx: TaskContext, data_dir: Path, artifact_out: Path) -> dict[str, Any]:
    if _option(ctx, "reuse_adapter") and (artifact_out / "model_card.json").is_file():
        return rescore(ctx, artifact_out)
    started = time.perf_counter()
    count, seed = int(_option(ctx, "notes")), int(_option(ctx, "notes_seed"))
    records = synthetic_records(count, seed, _option(ctx, "typo_rate"), _option(ctx, "ehr_share"))
    examples = sentence_examples(records) + negative_sentences(data_dir, int(_option(ctx, "neg_sentences")))
    config = EncoderTrainConfig(
        base_dir=minilm_dir(),
        base_name=MINILM_NAME,
        max_len=int(_option(ctx, "max_len")),
        epochs=_option(ctx, "epochs"),
        batch_size=int(_option(ctx, "batch_size")),
        learning_rate=_option(ctx, "learning_rate"),
        max_steps=int(_option(ctx, "max_steps")),
        seed=int(_option(ctx, "seed")),
        threads=int(_option(ctx, "threads")),
        show_progress=ctx.progress,
    )
    staging = artifact_out.with_name(artifact_out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("training phenotype", extra={"examples": len(examples), "notes": len(records)})
    result = train_token_classifier(examples, ENTITY_TYPES, config, staging)
    write_card(staging, new_card(ctx, config.as_record(), result.__dict__, len(records), len(examples)))
    shutil.rmtree(artifact_out, ignore_errors=True)
    staging.rename(artifact_out)
    summary = rescore(ctx, artifact_out)
    return {"train": result.__dict__, **summary, "seconds": round(time.perf_counter() - started, 1)}


def new_card(ctx: TaskContext, config: dict[str, Any], result: dict[str, Any], notes: int, examples: int) -> ModelCard:
    return ModelCard(
        name=NAME,
        task="phenotype",
        version="1",
        labels=bio_labels(ENTITY_TYPES),
        base_model=MINILM_NAME,
        base_model_source=MINILM_SOURCE,
        training_data=[
            TrainingData(
                name="OncoVigil synthetic pathology and consult notes",
                source="cds.cohort.phenotype.generate_phenotype_notes (this repository)",
                licence="Apache-2.0 (generated)",
                split=f"train: {notes} notes, seed {int(_option(ctx, 'notes_seed'))}, "
                f"{_option(ctx, 'typo_rate'):.0%} of words misspelled, {_option(ctx, 'ehr_share'):.0%} EHR-style "
                f"encounter notes; dev: {int(_option(ctx, 'dev_notes'))} "
                f"clean notes, seed {int(_option(ctx, 'dev_notes_seed'))}, also scored with "
                f"{_option(ctx, 'misspell_rate'):.0%} misspelled",
            ),
            TrainingData(
                name="ADE-Corpus-V2 (Gurulingappa et al., J Biomed Inform 2012), negative sentences only",
                source="trunghlt/AdverseDrugReaction @2851af9 (ADE-NEG.txt)",
                licence="research use, cite the paper",
                split=f"train: {int(_option(ctx, 'neg_sentences'))} sentences (seed 13) that name no cancer, "
                "stage, grade, receptor, organ or size, all tagged O",
            ),
            TrainingData(
                name="Synthea sample (10 patients, bulk NDJSON)",
                source="../shared/data/synthea_bulk_10",
                licence="Apache-2.0 (Synthea)",
                split="evaluation only: diagnosis label of every note vs the patient's confirmed cancer Conditions",
            ),
        ],
        hyperparameters={
            **config,
            "lora_modules_to_save": ["classifier"],
            "train_sentences": examples,
            "negative_sentences": int(_option(ctx, "neg_sentences")),
            "train_seconds": result["seconds"],
            "train_steps": result["steps"],
            "train_loss": result["train_loss"],
            "normalisation": "deterministic rules, models/phenotype/normalise.py",
            "field_choice": "most confident mention that normalises; diagnosis falls back to the site's label",
        },
    )


def rescore(ctx: TaskContext, artifact: Path) -> dict[str, Any]:
    """Dev metrics and the int8 decision written into the artifact's card; then the model dir is rebuilt."""
    model_dir = ctx.models_dir / "phenotype"
    notes = dev_notes(ctx)
    rate = _option(ctx, "misspell_rate")
    build_phenotype_dir(artifact, model_dir, int8=True, threads=ctx.runtime.threads)
    fp32 = _extractor(ctx, model_dir, allow_int8=False)
    tuning = tune_threshold(fp32, misspelled(notes, rate, 11))
    fp32.config = PhenotypeConfig(min_confidence=tuning["min_confidence"])
    metrics: dict[str, Any] = {
        "synthetic_dev": score_with_misspellings(fp32, notes, rate),
        "handwritten": score_with_misspellings(fp32, read_notes(HANDWRITTEN), rate),
    }
    export_record: dict[str, Any] = {"int8_keep": False}
    if (model_dir / "model_int8.onnx").is_file():
        q8 = _extractor(ctx, model_dir, allow_int8=True, cpu_only=True)
        q8.config = fp32.config
        metrics["synthetic_dev_int8"] = score(q8, notes)
        drop = metrics["synthetic_dev"]["clean"]["micro"]["f1"] - metrics["synthetic_dev_int8"]["micro"]["f1"]
        export_record = {"int8_keep": drop <= INT8_MAX_F1_DROP, "int8_micro_f1_drop": round(drop, 4)}
    synthea = ctx.settings.data_dir / "synthea_bulk_10"
    if synthea.is_dir():
        metrics["synthea_diagnosis"] = synthea_diagnosis(fp32, synthea)
    card = read_card(artifact)
    decoding = {"min_confidence": tuning["min_confidence"], "bio": "viterbi, BIO-constrained", "tuning": tuning}
    hyperparameters = {**card.hyperparameters, "decoding": decoding}
    update = {"dev_metrics": metrics, "export": export_record, "hyperparameters": hyperparameters}
    write_card(artifact, card.model_copy(update=update))
    final = export(ctx, artifact, model_dir)
    (dev_copy,) = dev_data(ctx, ctx.settings.data_dir, ctx.models_dir)
    return {
        "artifact": str(artifact),
        "model_dir": str(model_dir),
        "dev_copy": str(dev_copy),
        "dev_metrics": final.dev_metrics,
    }


def dev_data(ctx: TaskContext, data_dir: Path, out_dir: Path) -> list[Path]:
    """The synthetic dev notes (generated, so ``data_dir`` is not read): ``{out_dir}/phenotype_dev.jsonl``."""
    out = out_dir / "phenotype_dev.jsonl"
    write_dev_copy(ctx, out)
    return [out]


def write_dev_copy(ctx: TaskContext, out: Path) -> int:
    """The dev notes in the ``eval phenotype --data`` format."""
    return write_jsonl(out, _dev_records(ctx))


def _extractor(ctx: TaskContext, model_dir: Path, allow_int8: bool, cpu_only: bool = False) -> PhenotypeExtractor:
    runtime = RuntimeConfig(
        providers=(CPU,) if cpu_only else ctx.runtime.providers, threads=ctx.runtime.threads, allow_int8=allow_int8
    )
    return PhenotypeExtractor.load(model_dir, runtime, verify=(model_dir / "model_card.json").is_file())


def export(ctx: TaskContext, artifact_dir: Path, model_dir: Path) -> ModelCard:
    card = read_card(artifact_dir)
    return build_phenotype_dir(
        artifact_dir,
        model_dir,
        int8=bool(card.export.get("int8_keep", False)),
        threads=ctx.runtime.threads,
        export_extra={"artifact_fingerprint": artifact_fingerprint(artifact_dir)},
        fp16=ctx.settings.onnx_fp16,
    )


def evaluate(ctx: TaskContext, data: Path, model_dir: Path) -> dict[str, Any]:
    """A JSONL file of labelled notes: per-field scores clean and misspelled. A bulk-export folder
    (Synthea NDJSON): the diagnosis label against the patients' Conditions."""
    # the data first: a bad or empty file is refused without loading the model, and 0 notes would score 0
    if data.is_dir():
        bulk, conditions = bulk_notes_and_conditions(data)
        if not bulk:
            raise ConfigError("OV-0151", f"no notes in {data}; pass a bulk-export folder with DocumentReference NDJSON")
        return diagnosis_scores(_extractor(ctx, model_dir, allow_int8=ctx.runtime.allow_int8), bulk, conditions)
    notes = read_notes(data)
    if not notes:
        raise ConfigError("OV-0151", f"no notes in {data}; pass a .jsonl file of labelled notes")
    extractor = _extractor(ctx, model_dir, allow_int8=ctx.runtime.allow_int8)
    result = score_with_misspellings(extractor, notes, _option(ctx, "misspell_rate"))
    return {**result["clean"], "misspelled": result["misspelled"]}


TASK = TaskSpec(
    option_keys=frozenset(DEFAULTS),
    option_ranges=RANGES,
    eval_data=EvalData(expected="a .jsonl file of labelled notes or a Synthea bulk-export folder"),
    name="phenotype",
    train=train,
    export=export,
    evaluate=evaluate,
    dev_data=dev_data,
    headline_metrics=(
        "synthetic_dev.clean.micro.f1",
        "synthetic_dev.misspelled.micro.f1",
        "handwritten.clean.micro.f1",
    ),
    hf_task="token-classification",
    build_requires={"hidden_output": HIDDEN_OUTPUT},  # token retrieval reads the tagger's hidden states
    description="cancer phenotype: site, histology, diagnosis, TNM, stage group, grade, size, laterality, biomarkers",
)
