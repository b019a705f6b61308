"""``oncovigil eval TASK --data PATH [--model DIR] [--json]``: score a model on labelled data.

With ``--json`` stdout carries exactly one JSON object with the task's contract keys; everything else
goes to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cds.cli import fail, settings_of
from cds.errors import ConfigError
from cds.model_tasks import get_task, make_context, resolve_model_dir
from models import ModelError, ProviderError


def evaluate(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task to evaluate: ade, toxicity, drugcomb, recommender.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data in the task's format (file or folder).")],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model directory: ONNX (model.onnx) or Hugging Face (exported first)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Evaluate TASK on DATA and print its metrics."""
    settings = settings_of(ctx)
    try:
        spec = get_task(task)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    if not data.exists():
        raise fail(f"OV-0018: --data {data} does not exist; pass the labelled data file or folder")
    problem = spec.eval_data.problem(data)
    if problem is not None:
        raise fail(f"OV-0018: --data {data} {problem}")
    context = make_context(settings)
    try:
        model_dir = resolve_model_dir(context, spec, model)
        metrics = spec.evaluate(context, data, model_dir)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    except ModelError as exc:
        # A folder the user named that does not load is bad input like a bad --data; the default model is
        # ours, and a provider the host lacks is the host's, so those stay failures.
        named = model is not None and not isinstance(exc, ProviderError)
        raise fail(str(exc), 2 if exc.user_error or named else 1) from exc
    if as_json:
        typer.echo(json.dumps(metrics, sort_keys=True))
        return
    width = max((len(k) for k in metrics), default=0)
    for key, value in metrics.items():
        typer.echo(f"{key:{width}s}  {value:.4f}" if isinstance(value, float) else f"{key:{width}s}  {value}")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
