"""``oncovigil train TASK``, ``oncovigil export TASK``, ``oncovigil models build`` and ``models list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cds.cli import fail, settings_of
from cds.model_tasks import (
    TaskContext,
    TaskSpec,
    discover,
    get_task,
    headline,
    is_built,
    make_context,
    out_dir_problem,
)
from models import ModelError, ModelIntegrityError, ModelLoadError, read_card
from models.fp16 import FP16_FILE

models_app = typer.Typer(help="Build and list the model directories the service runs.", no_args_is_help=True)


def _options(values: list[str] | None) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"OV-0015: --option {item!r} must look like key=value")
        options[key.strip()] = value.strip()
    return options


def _check_options(spec: TaskSpec, options: dict[str, str]) -> None:
    """Refuse a typo'd or non-numeric ``-o`` before any work: it must not silently run the default."""
    unknown = spec.unknown_options(options)
    if unknown:
        known = ", ".join(sorted(spec.option_keys or ()))
        raise fail(f"OV-0015: {spec.name} has no option {', '.join(unknown)}; its options are: {known}")
    not_numbers = spec.non_numeric_options(options)
    if not_numbers:
        raise fail(f"OV-0015: {spec.name} options must be finite numbers: {', '.join(not_numbers)}")
    out_of_range = spec.out_of_range_options(options) + spec.unknown_text_choices(options)
    if out_of_range:
        raise fail(f"OV-0015: {spec.name} options out of range: {', '.join(out_of_range)}")


def _check_out(out: Path | None) -> None:
    """Refuse an --out that cannot be a folder before any work: training takes minutes, then mkdir would fail."""
    problem = None if out is None else out_dir_problem(out)
    if problem is not None:
        raise fail(f"OV-0152: --out {out} {problem}")


def _user_errors(exc: ModelError) -> typer.Exit:
    return fail(str(exc), 2 if exc.user_error else 1)


def train(
    ctx: typer.Context,
    task: Annotated[
        str, typer.Argument(help="Task to train: ade, toxicity, drugcomb, recommender, phenotype, summaries.")
    ],
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Public data folder (default: settings.data_dir).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where to write the adapter artifact (default: models/artifacts/TASK, the committed one)."
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Task option key=value (e.g. epochs=2), repeatable."),
    ] = None,
) -> None:
    """Fine-tune TASK with LoRA (fixed seed), save the small artifact, rebuild and evaluate its model."""
    settings = settings_of(ctx)
    spec = get_task(task)
    data = data_dir or settings.data_dir
    if not data.is_dir():
        state = "is not a directory" if data.exists() else "does not exist"
        raise fail(f"OV-0016: data directory {data} {state}; pass --data-dir or set ONCOVIGIL_DATA_DIR")
    options = _options(option)
    _check_options(spec, options)
    _check_out(out)
    context = make_context(settings, options)
    try:
        summary = spec.train(context, data, out or spec.artifact)
    except ModelError as exc:
        raise _user_errors(exc) from exc
    typer.echo(json.dumps(summary, indent=2, default=str))


def export(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task whose artifact to export.")],
    artifact: Annotated[
        Path | None,
        typer.Option(
            "--artifact", help="Adapter artifact (default: settings.artifacts[TASK] or models/artifacts/TASK)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Model directory (default: {models_dir}/TASK).")] = None,
) -> None:
    """Merge the artifact into the backbone, export ONNX with optimum and check torch-vs-ONNX parity."""
    settings = settings_of(ctx)
    spec = get_task(task)
    context = make_context(settings)
    source = artifact or context.artifact(spec)
    if not (source / "model_card.json").is_file():
        raise fail(f"OV-0017: {source} has no model_card.json; train first with `oncovigil train {task}`")
    if artifact is not None:
        _check_named_artifact(spec, artifact)
    _check_out(out)
    try:
        card = spec.export(context, source, out or settings.resolved_models_dir / task)
    except (ModelLoadError, ModelIntegrityError) as exc:
        # a folder the user named that lacks a file or fails its hashes is theirs to fix; the same error from
        # the backbone or the committed artifacts stays an operational failure
        named = artifact is not None and str(artifact) in str(exc)
        raise fail(str(exc), 2) if named else _user_errors(exc) from exc
    except ModelError as exc:
        raise _user_errors(exc) from exc
    typer.echo(json.dumps({"task": task, "name": card.name, "export": card.export}, indent=2, default=str))


def _check_named_artifact(spec: TaskSpec, artifact: Path) -> None:
    """Refuse an --artifact of another task or with a broken card before the export loads the backbone: it
    would otherwise fail late, on a file that task never has, as if the artifact had to be retrained."""
    try:
        card_task = read_card(artifact).task
    except ModelError as exc:
        raise fail(str(exc), 2) from exc
    if not spec.holds_own_model(card_task):
        raise fail(
            f"OV-0150: --artifact {artifact} holds an artifact of the task {card_task}, not of {spec.name}; "
            f"pass a {spec.name} artifact folder"
        )


@models_app.command("build")
def build(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the cached directory is current.")] = False,
    task: Annotated[list[str] | None, typer.Option("--task", help="Only these tasks (repeatable).")] = None,
) -> None:
    """Materialise every task's artifact into {models_dir}/TASK (skipped when already current).

    The artifact is the committed one unless ``settings.artifacts`` names another for the task.
    """
    settings = settings_of(ctx)
    context = make_context(settings)
    specs = discover()
    chosen = [specs[name] for name in sorted(specs) if not task or name in task]
    if task and len(chosen) != len(set(task)):
        raise fail(f"OV-0012: unknown task in {task}; known tasks: {', '.join(sorted(specs))}")
    for spec in chosen:
        _build_one(context, spec, settings.resolved_models_dir / spec.name, force)


def _build_one(context: TaskContext, spec: TaskSpec, target: Path, force: bool) -> None:
    artifact = context.artifact(spec)
    if not (artifact / "model_card.json").is_file():
        typer.echo(f"{spec.name}: no committed artifact in {artifact}; skipped (run `oncovigil train {spec.name}`)")
        return
    if not force and is_built(spec, target, artifact):
        typer.echo(f"{spec.name}: {target} is current")
        return
    try:
        card = spec.export(context, artifact, target)
    except ModelError as exc:
        raise _user_errors(exc) from exc
    typer.echo(f"{spec.name}: built {target} from {artifact.name} ({card.name}, {card.export.get('seconds', '?')} s)")


@models_app.command("dev-data")
def dev_data(
    ctx: typer.Context,
    task: Annotated[list[str] | None, typer.Option("--task", help="Only these tasks (repeatable).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Public data folder (default: settings.data_dir).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write into (default: {models_dir}).")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Task option key=value, as given to `train` (with --task), repeatable."),
    ] = None,
) -> None:
    """Write each task's dev split, in the format its `eval` reads, without training.

    These are the data behind the dev metrics in the model cards and the README; `oncovigil eval TASK --data
    FILE` on them reproduces those figures for the built default, and compares another model on the same data.
    """
    settings = settings_of(ctx)
    specs = discover()
    chosen = [specs[name] for name in sorted(specs) if not task or name in task]
    if task and len(chosen) != len(set(task)):
        raise fail(f"OV-0012: unknown task in {task}; known tasks: {', '.join(sorted(specs))}")
    options = _options(option)
    if options and len(chosen) != 1:
        raise fail("OV-0015: -o options belong to one task; name it with --task")
    for spec in chosen:
        _check_options(spec, options)
    _check_out(out)
    data = data_dir or settings.data_dir
    target = out or settings.resolved_models_dir
    context = make_context(settings, options)
    written: dict[str, list[str]] = {}
    for spec in chosen:
        if spec.dev_data is None:
            continue
        try:
            written[spec.name] = [str(path) for path in spec.dev_data(context, data, target)]
        except ModelError as exc:
            raise _user_errors(exc) from exc
    typer.echo(json.dumps(written, indent=2))


_VARIANTS = (("fp32", "model.onnx"), ("int8", "model_int8.onnx"), ("fp16", FP16_FILE))


@models_app.command("list")
def list_models(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object: every task with its card's whole dev metrics.")
    ] = False,
) -> None:
    """Tasks, the artifact each is built from, built directories and their graphs, headline dev metrics."""
    settings = settings_of(ctx)
    context = make_context(settings)
    listing: dict[str, dict[str, Any]] = {}
    for name, spec in sorted(discover().items()):
        target = settings.resolved_models_dir / name
        artifact = context.artifact(spec)
        built = is_built(spec, target, artifact)
        # which graphs a host can serve: fp16 on CUDA, int8 on CPU where the build kept them
        variants = [v for v, f in _VARIANTS if (target / f).is_file()] if built else []
        state = (f"built [{' '.join(variants)}]" if variants else "built") if built else "not built"
        entry: dict[str, Any] = {"model_dir": str(target), "built": built, "graphs": variants, "artifact": None}
        if (artifact / "model_card.json").is_file():
            card = read_card(artifact)
            entry.update(artifact=str(artifact), model=card.name, dev_metrics=card.dev_metrics)
            shown = " ".join(f"{k}={v}" for k, v in headline(card.dev_metrics, spec.headline_metrics).items())
            source = f"{card.name} ({artifact.name})"
            line = f"{name:12s} {source:36s} {state:22s} {target}  dev: {shown or '-'}"
        else:
            line = f"{name:12s} {'(no artifact)':36s} {state:22s} {target}"
        listing[name] = entry
        if not as_json:
            typer.echo(line)
    if as_json:
        typer.echo(json.dumps(listing, indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("export")(export)
    app.add_typer(models_app, name="models")
