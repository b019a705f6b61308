"""``oncovigil refine TASK --labels FILE``: fix the labels a compact extractor gets wrong, cheapest way first.

Retrieval over the labelled notes (no training), then LoRA fine-tuning for what retrieval leaves under the
target; a change is kept only when the held-out score improves. Only ``toxicity`` is supported so far.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from cds.cli import fail, settings_of
from cds.errors import ConfigError, RefineError
from cds.extraction import RETRIEVAL_DIR
from cds.model_tasks import get_task, make_context, resolve_model_dir
from cds.refine import FineTune, RefineOptions, refine_toxicity
from models import ModelCard, ModelError, RuntimeConfig, read_card, write_card
from models.backbone import MINILM_NAME, MINILM_SOURCE, minilm_dir
from models.runtime import CPU
from models.toxicity import REGISTRY_NAME, ToxicityExtractor, ToxicityNote, load_toxicity_extractor, read_notes
from models.toxicity.build import build_toxicity_dir
from models.toxicity.train import ToxicityTrainConfig, train_toxicity


def lora_fine_tuner(symptoms: tuple[str, ...], budget_s: float, threads: int) -> FineTune:
    """Train a new adapter and head on the pool within ``budget_s``, build it, and open it (CPU, fp32)."""

    def fine_tune(pool: Sequence[ToxicityNote], folder: Path) -> ToxicityExtractor:
        config = ToxicityTrainConfig(symptoms=symptoms, threads=threads, time_budget_s=budget_s)
        artifact, model_dir = folder / "artifact", folder / "model"
        summary = train_toxicity(pool, minilm_dir(), artifact, config)
        (folder / "training.json").write_text(json.dumps(summary, default=str) + "\n", encoding="utf-8")
        card = ModelCard(
            name=REGISTRY_NAME,
            task="toxicity",
            version="1-refined",
            labels=[],
            base_model=MINILM_NAME,
            base_model_source=MINILM_SOURCE,
            hyperparameters={**config.as_dict(), "training": summary, "refined_from": "labelled pool"},
        )
        write_card(artifact, card)
        build_toxicity_dir(artifact, model_dir, int8=False, threads=threads)
        return load_toxicity_extractor(model_dir, RuntimeConfig(providers=(CPU,), threads=threads, allow_int8=False))

    return fine_tune


def refine(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task to refine (toxicity).")],
    labels: Annotated[Path, typer.Option("--labels", help="Labelled notes (the task's eval format, JSONL).")],
    model: Annotated[Path | None, typer.Option("--model", help="Model directory to start from.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report, index, adapter (default {home}/refine/TASK).")
    ] = None,
    target: Annotated[float, typer.Option("--target", help="Per-label accuracy target on held-out notes.")] = 0.95,
    finetune: Annotated[bool, typer.Option("--finetune/--no-finetune", help="Allow LoRA fine-tuning.")] = True,
    budget_s: Annotated[float, typer.Option("--finetune-budget-s", help="Fine-tuning time budget.")] = 240.0,
    threads: Annotated[int, typer.Option("--threads", help="torch and onnxruntime threads.")] = 1,
    install: Annotated[
        bool, typer.Option("--install", help="If retrieval is kept, put its index where the sync loads it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Refine TASK from labelled notes and write a before/after report per label."""
    settings = settings_of(ctx)
    if task != "toxicity":
        raise fail(f"OV-0130: refine supports the toxicity task only (got {task!r})")
    if not labels.is_file():
        raise fail(f"OV-0131: --labels {labels} is not a file; pass labelled notes in JSONL")
    context = make_context(settings)
    destination = out or settings.home / "refine" / task
    try:
        model_dir = resolve_model_dir(context, get_task(task), model)
        runtime = RuntimeConfig(providers=(CPU,), threads=threads, allow_int8=False)
        current = load_toxicity_extractor(model_dir, runtime)
        notes = read_notes(labels, current.symptoms)
        tuner = lora_fine_tuner(current.symptoms, budget_s, threads) if finetune else None
        options = RefineOptions(target=target, finetune=finetune)
        has_card = (model_dir / "model_card.json").is_file()
        fingerprint = read_card(model_dir).files.get("model.onnx") if has_card else None
        report = refine_toxicity(current, notes, destination, options, tuner, fingerprint)
    except (ConfigError, RefineError) as exc:
        raise fail(str(exc)) from exc
    except ModelError as exc:
        raise fail(str(exc), 2 if exc.user_error else 1) from exc
    if install and report["kept"] == "retrieval":
        target_dir = settings.resolved_models_dir / RETRIEVAL_DIR
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
