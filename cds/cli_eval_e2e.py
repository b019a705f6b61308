"""``oncovigil eval e2e --truth notes.jsonl [--url URL] [--json]``: score what the sync wrote to the server.

``oncovigil eval TASK --data ...`` (``cds/cli_eval.py``) scores one model on labelled data; e2e reads a FHIR
server instead, so it takes ``--truth`` and ``--url``. Typer cannot hang a sub-command under a command
that has a positional argument, so this module swaps the ``eval`` command that ``cli_eval`` registered
(the modules register in name order) for one with both option sets; every other task goes on to
``cli_eval.evaluate`` unchanged.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cds import cli_eval
from cds.cli import fail, settings_of
from cds.errors import ConfigError, OncoVigilError

E2E = "e2e"


def _print(metrics: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(metrics, sort_keys=True))
        return
    width = max((len(k) for k in metrics), default=0)
    for key, value in metrics.items():
        typer.echo(f"{key:{width}s}  {value:.4f}" if isinstance(value, float) else f"{key:{width}s}  {value}")


def run_e2e(ctx: typer.Context, truth: Path, url: str | None) -> dict[str, Any]:
    from adapters import FhirClient
    from cds.eval_e2e import evaluate_e2e, read_truth
    from cds.runner import fhir_auth, fhir_config

    settings = settings_of(ctx)
    try:
        expected = read_truth(truth)
    except OncoVigilError as exc:
        raise fail(str(exc)) from None
    config = fhir_config(settings.model_copy(update={"fhir_base_url": url})) if url else fhir_config(settings)

    async def evaluate() -> dict[str, Any]:
        async with FhirClient(config, auth=fhir_auth(settings)) as client:
            metrics = await evaluate_e2e(client, expected)
        return {**metrics, "fhir_base_url": config.base_url}

    return asyncio.run(evaluate())


def evaluate(
    ctx: typer.Context,
    task: Annotated[
        str,
        typer.Argument(help="Task to evaluate: ade, toxicity, drugcomb, recommender, phenotype, summaries, or e2e "
                       "(the sync's output on a FHIR server against the cohort's ground truth)."),
    ],
    data: Annotated[
        Path | None, typer.Option("--data", help="Labelled data in the task's format (file or folder).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model directory: ONNX (model.onnx) or Hugging Face (exported first)."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="e2e: the cohort's notes.jsonl; overprescriptions.jsonl is read beside it."),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="e2e: FHIR base URL (default: settings.fhir_base_url).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Evaluate TASK on DATA (or, for e2e, the FHIR server on TRUTH) and print its metrics."""
    if task != E2E:
        if truth is not None or url is not None:
            raise fail(f"OV-0018: --truth and --url apply to `eval {E2E}` only; pass --data for {task}")
        if data is None:
            raise fail(f"OV-0018: `eval {task}` needs --data (the labelled data file or folder)")
        cli_eval.evaluate(ctx, task, data, model, as_json)
        return
    source = truth or data
    if source is None:
        raise fail("OV-0018: `eval e2e` needs --truth (the cohort's notes.jsonl)")
    if model is not None:
        raise fail(f"OV-0018: --model applies to the model tasks; `eval {E2E}` scores what the sync wrote")
    try:
        metrics = run_e2e(ctx, source, url)
    except ConfigError as exc:  # bad settings or arguments, as for every other command
        raise fail(str(exc)) from None
    except OncoVigilError as exc:
        raise fail(str(exc), code=1) from None
    _print(metrics, as_json)


def register(app: typer.Typer) -> None:
    app.registered_commands[:] = [
        info for info in app.registered_commands
        if not (info.name == "eval" and info.callback is cli_eval.evaluate)
    ]
    app.command("eval")(evaluate)
