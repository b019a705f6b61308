"""``oncovigil refine TASK --labels FILE``: fix the labels a compact extractor gets wrong, cheapest way first.

Retrieval over the labelled examples (no training), then LoRA fine-tuning for what retrieval leaves under the
target; a change is kept only when the held-out score improves. Tasks: ``toxicity`` (labelled notes in the
toxicity eval format, accuracy per symptom), ``drugcomb`` (DrugComb-format sentences, F1 per relation class),
``ade`` (an ADE-Corpus-V2 folder, F1 of drug and event mentions and of their pairs) and ``phenotype`` (labelled
notes in the phenotype eval format with their spans, F1 per field; retrieval only).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from cds.cli import fail, settings_of
from cds.errors import ConfigError, RefineError
from cds.extraction import RETRIEVAL_DIRS
from cds.model_tasks import get_task, make_context, out_dir_problem, resolve_model_dir
from cds.refine import FineTune, RefineOptions, run_ladder
from cds.refine_drugcomb import DRUGCOMB_TASK
from cds.refine_taggers import ADE_TASK, phenotype_task
from cds.refine_toxicity import TOXICITY_TASK
from models import ModelCard, ModelError, ModelIntegrityError, ModelLoadError, RuntimeConfig, read_card, write_card
from models.backbone import MINILM_NAME, MINILM_SOURCE, MPNET_NAME, minilm_dir
from models.encoder_export import artifact_backbone_dir, read_task
from models.runtime import CPU

# per-label target: toxicity accuracy, the others F1
TARGETS = {"toxicity": 0.95, "drugcomb": 0.6, "ade": 0.75, "phenotype": 0.9}
# ADE LoRA steps per second of budget (batch 16, short sentences, 2 CPU threads): about 0.3 s a step on
# MiniLM, 1.2 s on MPNet-base; an unknown encoder is budgeted as a base-size one
ADE_STEPS_PER_SECOND = {MINILM_NAME: 3.0, MPNET_NAME: 0.8}
ADE_STEPS_PER_SECOND_OTHER = 0.8


def _card(artifact: Path, name: str, task: str, hyperparameters: dict[str, Any], base_name: str = MINILM_NAME) -> None:
    card = ModelCard(
        name=name,
        task=task,
        version="1-refined",
        labels=[],
        base_model=base_name,
        base_model_source=MINILM_SOURCE if base_name == MINILM_NAME else "see the committed artifact's card",
        hyperparameters={**hyperparameters, "refined_from": "labelled pool"},
    )
    write_card(artifact, card)


def toxicity_fine_tuner(symptoms: tuple[str, ...], budget_s: float, threads: int) -> FineTune:
    """Train a new adapter and head on the pool within ``budget_s``, build it, and open it (CPU, fp32)."""
    from models.toxicity import REGISTRY_NAME, ToxicityExtractor, ToxicityNote, load_toxicity_extractor
    from models.toxicity.build import build_toxicity_dir
    from models.toxicity.train import ToxicityTrainConfig, train_toxicity

    def fine_tune(pool: Sequence[ToxicityNote], folder: Path) -> ToxicityExtractor:
        config = ToxicityTrainConfig(symptoms=symptoms, threads=threads, time_budget_s=budget_s)
        artifact, model_dir = folder / "artifact", folder / "model"
        summary = train_toxicity(pool, minilm_dir(), artifact, config)
        (folder / "training.json").write_text(json.dumps(summary, default=str) + "\n", encoding="utf-8")
        _card(artifact, REGISTRY_NAME, "toxicity", {**config.as_dict(), "training": summary})
        build_toxicity_dir(artifact, model_dir, int8=False, threads=threads)
        return load_toxicity_extractor(model_dir, RuntimeConfig(providers=(CPU,), threads=threads, allow_int8=False))

    return fine_tune


def drugcomb_fine_tuner(drugs_file: Path, budget_s: float, threads: int) -> FineTune:
    """A new adapter and head on the pool sentences within ``budget_s`` (the current model's decoding)."""
    from models.drugcomb import DrugCombExtractor
    from models.drugcomb.build import build_drugcomb_dir
    from models.drugcomb.data import DrugCombDoc
    from models.drugcomb.extractor import REGISTRY_NAME, load_drugcomb_extractor
    from models.drugcomb.train import DrugCombTrainConfig, train_drugcomb

    def fine_tune(pool: Sequence[DrugCombDoc], folder: Path) -> DrugCombExtractor:
        config = DrugCombTrainConfig(threads=threads, time_budget_s=budget_s)
        artifact, model_dir = folder / "artifact", folder / "model"
        summary = train_drugcomb(pool, [], minilm_dir(), drugs_file, artifact, config)
        (folder / "training.json").write_text(json.dumps(summary, default=str) + "\n", encoding="utf-8")
        _card(artifact, REGISTRY_NAME, "drugcomb", {**config.as_dict(), "training": summary})
        build_drugcomb_dir(artifact, model_dir, int8=False, threads=threads)
        return load_drugcomb_extractor(model_dir, RuntimeConfig(providers=(CPU,), threads=threads, allow_int8=False))

    return fine_tune


def ade_fine_tuner(warm_start: Path | None, backbones: Path, budget_s: float, threads: int) -> FineTune:
    """LoRA on the pool sentences, continuing ``warm_start`` (the committed adapter) on its own backbone when
    given, else a fresh adapter on MiniLM (the fastest to train within a budget)."""
    from cds.model_task_ade import VENDORED_TERMS
    from models.ade import AdeExtractor
    from models.ade.corpus import AdeSentence
    from models.ade.ctcae import read_terms
    from models.ade.extractor import NAME
    from models.ade.training import ENTITY_TYPES, build_ade_dir, corpus_examples
    from models.encoder_train import EncoderTrainConfig, lora_targets, train_token_classifier

    base_name = str(read_task(warm_start).get("base_model") or MINILM_NAME) if warm_start else MINILM_NAME
    base_dir = artifact_backbone_dir(warm_start, backbones) if warm_start else minilm_dir()

    def fine_tune(pool: Sequence[AdeSentence], folder: Path) -> AdeExtractor:
        steps = max(20, int(budget_s * ADE_STEPS_PER_SECOND.get(base_name, ADE_STEPS_PER_SECOND_OTHER)))
        config = EncoderTrainConfig(
            base_dir=base_dir,
            base_name=base_name,
            target_modules=lora_targets(base_dir),
            max_steps=steps,
            threads=threads,
            init_adapter=warm_start,
        )
        artifact, model_dir = folder / "artifact", folder / "model"
        result = train_token_classifier(corpus_examples(pool), ENTITY_TYPES, config, artifact)
        summary = {**result.__dict__, "warm_start": str(warm_start) if warm_start else None}
        (folder / "training.json").write_text(json.dumps(summary, default=str) + "\n", encoding="utf-8")
        _card(artifact, NAME, "ade", {**config.as_record(), "training": summary}, base_name)
        build_ade_dir(artifact, model_dir, read_terms(VENDORED_TERMS), int8=False, threads=threads, base_dir=base_dir)
        return AdeExtractor.load(model_dir, RuntimeConfig(providers=(CPU,), threads=threads, allow_int8=False))

    return fine_tune


def _run(
    task: str,
    model_dir: Path,
    labels: Path,
    destination: Path,
    options: RefineOptions,
    budget_s: float,
    threads: int,
    adapter: Path | None,
    backbones: Path,
) -> dict[str, Any]:
    runtime = RuntimeConfig(providers=(CPU,), threads=threads, allow_int8=False)
    has_card = (model_dir / "model_card.json").is_file()
    fingerprint = read_card(model_dir).files.get("model.onnx") if has_card else None
    if task == "phenotype":
        from models.phenotype import PhenotypeExtractor
        from models.phenotype.data import read_notes as read_phenotype_notes

        phenotype = PhenotypeExtractor.load(model_dir, runtime, verify=has_card)
        # no LoRA step: the phenotype tagger trains on generated notes (`oncovigil train phenotype`)
        notes = read_phenotype_notes(labels)
        return run_ladder(phenotype_task(notes), phenotype, notes, destination, options, None, fingerprint)
    if task == "ade":
        from models.ade import AdeExtractor, read_corpus

        ade_model = AdeExtractor.load(model_dir, runtime, verify=has_card)
        ade_tuner = ade_fine_tuner(adapter, backbones, budget_s, threads) if options.finetune else None
        return run_ladder(ADE_TASK, ade_model, read_corpus(labels), destination, options, ade_tuner, fingerprint)
    if task == "drugcomb":
        from models.drugcomb.data import read_jsonl
        from models.drugcomb.extractor import load_drugcomb_extractor
        from models.drugcomb.lexicon import DRUGS_FILE

        extractor = load_drugcomb_extractor(model_dir, runtime)
        tuner = drugcomb_fine_tuner(model_dir / DRUGS_FILE, budget_s, threads) if options.finetune else None
        return run_ladder(DRUGCOMB_TASK, extractor, read_jsonl(labels), destination, options, tuner, fingerprint)
    from models.toxicity import load_toxicity_extractor, read_notes

    current = load_toxicity_extractor(model_dir, runtime)
    toxicity_notes = read_notes(labels, current.symptoms)
    toxicity_tuner = toxicity_fine_tuner(current.symptoms, budget_s, threads) if options.finetune else None
    return run_ladder(TOXICITY_TASK, current, toxicity_notes, destination, options, toxicity_tuner, fingerprint)


def refine(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task to refine: toxicity, drugcomb, ade or phenotype.")],
    labels: Annotated[
        Path,
        typer.Option("--labels", help="Labelled examples in the task's eval format (ade: an ADE-Corpus-V2 folder)."),
    ],
    model: Annotated[Path | None, typer.Option("--model", help="Model directory to start from.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report, index, adapter (default {home}/refine/TASK).")
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(
            "--target",
            help="Per-label target; default toxicity 0.95 (accuracy), F1 drugcomb 0.6, ade 0.75, phenotype 0.9.",
        ),
    ] = None,
    finetune: Annotated[bool, typer.Option("--finetune/--no-finetune", help="Allow LoRA fine-tuning.")] = True,
    budget_s: Annotated[float, typer.Option("--finetune-budget-s", help="Fine-tuning time budget.")] = 240.0,
    threads: Annotated[int, typer.Option("--threads", help="torch and onnxruntime threads.")] = 1,
    k: Annotated[int, typer.Option("--k", min=1, help="Labelled neighbours that vote at inference.")] = 8,
    install: Annotated[
        bool, typer.Option("--install", help="If retrieval is kept, put its index where the sync loads it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Refine TASK from labelled examples and write a before/after report per label."""
    settings = settings_of(ctx)
    if task not in TARGETS:
        raise fail(f"OV-0130: refine supports the tasks {', '.join(TARGETS)} (got {task!r})")
    if task == "ade" and not labels.is_dir():
        raise fail(f"OV-0131: --labels {labels} is not a folder; pass DRUG-AE.rel and ADE-NEG.txt in one folder")
    if task != "ade" and not labels.is_file():
        raise fail(f"OV-0131: --labels {labels} is not a file; pass labelled examples in JSONL")
    # checked before any work: NaN passes every comparison, and a bad --out would only fail after the ladder
    if target is not None and not (math.isfinite(target) and 0.0 < target <= 1.0):
        metric = "accuracy" if task == "toxicity" else "F1"
        raise fail(f"OV-0153: --target {target} must be in (0, 1]; it is the per-label {metric} to reach")
    if threads < 0:
        raise fail(f"OV-0153: --threads {threads} must be >= 0 (0: the runtime's default)")
    if not (math.isfinite(budget_s) and budget_s >= 0.0):
        raise fail(f"OV-0153: --finetune-budget-s {budget_s} must be a number of seconds >= 0")
    destination = out or settings.home / "refine" / task
    problem = out_dir_problem(destination)
    if problem is not None:
        raise fail(f"OV-0152: {'--out' if out else 'the report folder'} {destination} {problem}")
    context = make_context(settings)
    options = RefineOptions(target=TARGETS[task] if target is None else target, finetune=finetune, k=k)
    try:
        spec = get_task(task)
        model_dir = resolve_model_dir(context, spec, model)
        # the default model continues its committed adapter; a user's model gets a fresh one
        artifact = context.artifact(spec)
        adapter = artifact if model is None and (artifact / "adapter_config.json").is_file() else None
        report = _run(task, model_dir, labels, destination, options, budget_s, threads, adapter, context.backbones_dir)
    except (ConfigError, RefineError) as exc:
        raise fail(str(exc)) from exc
    except ModelError as exc:
        # a folder the user named that does not load is bad input; a failed fine-tuning run is not
        named = model is not None and isinstance(exc, ModelLoadError | ModelIntegrityError)
        raise fail(str(exc), 2 if exc.user_error or named else 1) from exc
    if install and report["kept"] == "retrieval":
        target_dir = settings.resolved_models_dir / RETRIEVAL_DIRS[task]
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in ("retrieval.json", "retrieval_index.npz"):
            shutil.copy2(destination / name, target_dir / name)
        typer.echo(f"retrieval index installed in {target_dir}", err=True)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
        return
    typer.echo((destination / "report.md").read_text(encoding="utf-8"))


def register(app: typer.Typer) -> None:
    app.command("refine")(refine)
