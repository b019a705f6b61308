"""Task dispatch for ``oncovigil train|export|eval TASK`` and ``oncovigil models build``.

Each task lives in its own module ``cds/model_task_<task>.py`` exposing ``TASK = TaskSpec(...)``; this
module discovers them, so adding a task never edits a shared file. The callables receive a
:class:`TaskContext` built from the settings (``models`` never reads settings itself).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import pkgutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cds.errors import ConfigError
from cds.settings import Settings
from models import ModelCard, RuntimeConfig, read_card, verify_dir
from models.fp16 import Fp16Mode

ARTIFACTS_ROOT = Path(__file__).resolve().parent.parent / "models" / "artifacts"


@dataclass(frozen=True)
class TaskContext:
    """What a task callable may use: the settings, the runtime config and whether to draw progress bars."""

    settings: Settings
    runtime: RuntimeConfig
    progress: bool
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def models_dir(self) -> Path:
        return self.settings.resolved_models_dir

    @property
    def backbones_dir(self) -> Path:
        return self.settings.backbones_dir

    def artifact(self, spec: TaskSpec) -> Path:
        """The artifact this deployment builds ``spec`` from: ``settings.artifacts[task]`` or the committed one."""
        chosen = self.settings.artifacts.get(spec.name)
        return spec.artifact if chosen is None else resolve_artifact(chosen)


# train(ctx, data_dir, artifact_out) -> summary (dev metrics, seconds, ...); it also rebuilds the model dir
TrainFn = Callable[[TaskContext, Path, Path], dict[str, Any]]
# export(ctx, artifact_dir, model_dir) -> the written model card
ExportFn = Callable[[TaskContext, Path, Path], ModelCard]
# evaluate(ctx, data_path, model_dir) -> the contract's metric keys
EvaluateFn = Callable[[TaskContext, Path, Path], dict[str, Any]]
# dev_data(ctx, data_dir, out_dir) -> the files written: the dev split ``train`` scores, in the format ``eval`` reads
DevDataFn = Callable[[TaskContext, Path, Path], list[Path]]


@dataclass(frozen=True)
class OptionRange:
    """The values a numeric ``-o`` option may take: a dev fraction of 0 or 1 leaves a side of the split empty,
    and a count below zero means nothing, yet both parse as numbers."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


FRACTION = OptionRange(0.0, 1.0, low_open=True, high_open=True)  # a split share: both sides must keep data
SHARE = OptionRange(0.0, 1.0)  # a rate or probability
NON_NEGATIVE = OptionRange(0.0)
POSITIVE = OptionRange(0.0, low_open=True)  # a learning rate or an epoch count: 0 trains nothing
AT_LEAST_ONE = OptionRange(1.0)  # a batch size
# a token window below this holds no note text beside the special tokens, and the tokenizer fails late
MAX_LEN = OptionRange(8.0)
# What every encoder task's training reads (ADE, DrugComb, phenotype, toxicity), with the values that mean something.
ENCODER_TRAINING_RANGES: Mapping[str, OptionRange] = {
    "threads": NON_NEGATIVE,
    "epochs": POSITIVE,
    "batch_size": AT_LEAST_ONE,
    "learning_rate": POSITIVE,
    "max_len": MAX_LEN,
}


@dataclass(frozen=True)
class EvalData:
    """What ``eval TASK --data`` reads, checked before the model is resolved: the default model's first build
    takes half a minute or more, and a wrong path must not cost it."""

    file: bool = True
    folder: bool = True
    expected: str = "the labelled data in the task's format"

    def problem(self, path: Path) -> str | None:
        """Why ``path`` cannot be this data (None when it can); the caller has checked that it exists."""
        if path.is_dir():
            return None if self.folder else f"is a folder, not a file; pass {self.expected}"
        return None if self.file else f"is not a folder; pass {self.expected}"


@dataclass(frozen=True)
class TaskSpec:
    """One model task: its committed artifact folder and its train / export / evaluate entry points.

    ``hf_task`` is the optimum export task used when a user points ``--model`` at a Hugging Face folder.
    """

    name: str
    train: TrainFn
    export: ExportFn
    evaluate: EvaluateFn
    hf_task: str = "token-classification"
    description: str = ""
    artifact_dir: Path | None = None
    # The ``-o key=value`` keys ``train`` reads; None accepts any. A typo must not silently train the default.
    option_keys: frozenset[str] | None = None

    text_option_keys: frozenset[str] = frozenset()  # the options that are not numbers
    # export-record entries a built directory must carry to be current: a build that changed what it makes
    # (a tagger now exposing its hidden states for retrieval) rebuilds older directories
    build_requires: Mapping[str, Any] = field(default_factory=dict)
    # Writes the dev split without training, so a built deployment can reproduce its card's dev metrics
    dev_data: DevDataFn | None = None
    # dotted paths into the card's dev metrics that `models list` prints (the rest with --json)
    headline_metrics: tuple[str, ...] = ()
    option_ranges: Mapping[str, OptionRange] = field(default_factory=dict)
    # the values a text option may take, for the text options that have a fixed set (checked before any work)
    text_option_choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    eval_data: EvalData = EvalData()
    # the task names a model card of this task may carry besides ``name`` (cards written before a rename)
    card_tasks: frozenset[str] = frozenset()

    def unknown_options(self, options: Mapping[str, str]) -> list[str]:
        return [] if self.option_keys is None else sorted(set(options) - self.option_keys)

    def non_numeric_options(self, options: Mapping[str, str]) -> list[str]:
        """``key=value`` of every numeric option whose value is not a finite number (checked before any work)."""
        numeric = (self.option_keys or frozenset()) - self.text_option_keys
        return [f"{key}={options[key]}" for key in sorted(numeric & set(options)) if _number(options[key]) is None]

    def out_of_range_options(self, options: Mapping[str, str]) -> list[str]:
        """``key=value (must be RANGE)`` of every numeric option outside its range (checked before any work)."""
        bad: list[str] = []
        for key in sorted(set(self.option_ranges) & set(options)):
            value = _number(options[key])
            if value is not None and not self.option_ranges[key].admits(value):
                bad.append(f"{key}={options[key]} (must be {self.option_ranges[key]})")
        return bad

    def unknown_text_choices(self, options: Mapping[str, str]) -> list[str]:
        """``key=value (must be one of ...)`` of every text option outside its fixed set of values."""
        return [
            f"{key}={options[key]} (must be one of {', '.join(self.text_option_choices[key])})"
            for key in sorted(set(self.text_option_choices) & set(options))
            if options[key] not in self.text_option_choices[key]
        ]

    def holds_own_model(self, card_task: str) -> bool:
        return card_task == self.name or card_task in self.card_tasks

    @property
    def artifact(self) -> Path:
        return self.artifact_dir or ARTIFACTS_ROOT / self.name


def _number(raw: str) -> float | None:
    """``raw`` as a finite number, else None: NaN passes every comparison and inf every lower bound."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def headline(metrics: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """The values at ``paths`` ("corpus_dev.pair_f1") in a card's nested dev metrics; absent paths are left out."""
    found: dict[str, Any] = {}
    for path in paths:
        value: Any = metrics
        for key in path.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None:
            found[path] = round(value, 4) if isinstance(value, float) else value
    return found


def resolve_artifact(value: Path) -> Path:
    """A folder as given, or a bare name (``ade-minilm``) of an artifact shipped under models/artifacts."""
    if not value.is_absolute() and len(value.parts) == 1 and (ARTIFACTS_ROOT / value).is_dir():
        return ARTIFACTS_ROOT / value
    return value


def check_artifacts(settings: Settings, tasks: Mapping[str, TaskSpec]) -> None:
    """Refuse an artifact setting for an unknown task or one that names a folder without a model card."""
    for task, value in sorted(settings.artifacts.items()):
        if task not in tasks:
            raise ConfigError(
                "OV-0034",
                f"artifacts.{task}: no such model task; known tasks: {', '.join(sorted(tasks))}",
            )
        folder = resolve_artifact(value)
        if not (folder / "model_card.json").is_file():
            shipped = ", ".join(sorted(p.name for p in ARTIFACTS_ROOT.iterdir() if (p / "model_card.json").is_file()))
            raise ConfigError(
                "OV-0034",
                f"artifacts.{task} = {value}: {folder} holds no model_card.json; give an artifact folder "
                f"written by `oncovigil train {task} --out DIR` or a shipped one ({shipped})",
            )


def discover() -> dict[str, TaskSpec]:
    """Every ``cds.model_task_*`` module's ``TASK``, keyed by task name."""
    import cds

    tasks: dict[str, TaskSpec] = {}
    for info in sorted(pkgutil.iter_modules(cds.__path__), key=lambda m: m.name):
        if info.name.startswith("model_task_"):
            module = importlib.import_module(f"cds.{info.name}")
            spec = getattr(module, "TASK", None)
            if isinstance(spec, TaskSpec):
                tasks[spec.name] = spec
    return tasks


def get_task(name: str) -> TaskSpec:
    tasks = discover()
    if name not in tasks:
        known = ", ".join(sorted(tasks)) or "none"
        raise ConfigError("OV-0012", f"unknown model task {name!r}; known tasks: {known}")
    return tasks[name]


def runtime_config(settings: Settings) -> RuntimeConfig:
    return RuntimeConfig(providers=tuple(settings.onnx_providers), threads=settings.onnx_threads)


def numeric_option(
    ctx: TaskContext, defaults: Mapping[str, float], key: str, ranges: Mapping[str, OptionRange] | None = None
) -> float:
    """A task's ``-o key=value`` as a number (its default when not given); a non-number, NaN, infinity or a
    value outside ``ranges[key]`` is a ConfigError."""
    raw = ctx.options.get(key)
    if raw is None:
        return float(defaults[key])
    value = _number(raw)
    if value is None:
        raise ConfigError("OV-0015", f"option {key}={raw!r} is not a finite number")
    bounds = (ranges or {}).get(key)
    if bounds is not None and not bounds.admits(value):
        raise ConfigError("OV-0015", f"option {key}={raw!r} must be {bounds}")
    return value


def out_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder to write into, else None: checked before any work, so a
    long run never ends on a FileExistsError from mkdir."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            return None
        if folder.exists() or folder.is_symlink():
            where = "is not a folder" if folder == path else f"is under {folder}, which is not a folder"
            return f"{where}; pass a folder (created when missing)"
    return None


def make_context(settings: Settings, options: Mapping[str, str] | None = None) -> TaskContext:
    if settings.artifacts:
        check_artifacts(settings, discover())
    return TaskContext(
        settings=settings,
        runtime=runtime_config(settings),
        progress=sys.stderr.isatty(),
        options=options or {},
    )


def artifact_fingerprint(artifact_dir: Path) -> str:
    """Changes whenever the artifact changes: its card lists every file's sha256 and carries the decoding
    settings and metrics, so hashing the card covers both."""
    read_card(artifact_dir)  # a clear error when the card is missing or invalid
    return hashlib.sha256((artifact_dir / "model_card.json").read_bytes()).hexdigest()[:16]


def is_built(spec: TaskSpec, model_dir: Path, artifact: Path) -> bool:
    """True when ``model_dir`` verifies and was built from ``artifact`` as it is now."""
    try:
        card = verify_dir(model_dir)
    except Exception:  # any load or integrity failure means "rebuild"
        return False
    built_from = card.export.get("artifact_fingerprint")
    if any(card.export.get(key) != value for key, value in spec.build_requires.items()):
        return False
    return built_from == artifact_fingerprint(artifact)


def resolve_model_dir(ctx: TaskContext, spec: TaskSpec, model: Path | None) -> Path:
    """The directory to run: the built default, a user's ONNX directory, or a user's HF directory.

    A user's Hugging Face directory is exported once into ``{models_dir}/_user/<task>-<hash of its path>``.
    """
    from models.encoder_export import export_user_hf_dir

    if model is None:
        default = ctx.models_dir / spec.name
        artifact = ctx.artifact(spec)
        has_artifact = (artifact / "model_card.json").is_file()
        if has_artifact and not is_built(spec, default, artifact):
            spec.export(ctx, artifact, default)  # missing, stale or tampered: rebuild from the artifact
        elif not has_artifact and not (default / "model_card.json").is_file():
            raise ConfigError(
                "OV-0013",
                f"no {spec.name} model in {default} and no committed artifact; run `oncovigil train {spec.name}`",
            )
        return default
    if not model.is_dir():
        raise ConfigError("OV-0014", f"--model {model} is not a directory; pass an ONNX or Hugging Face model folder")
    if (model / "model_card.json").is_file():
        # another task's folder loads far enough to fail on its labels or files with a misleading message
        card_task = read_card(model).task
        if not spec.holds_own_model(card_task):
            raise ConfigError(
                "OV-0150",
                f"--model {model} holds a model for the task {card_task}, not for {spec.name}; "
                f"pass a {spec.name} model folder",
            )
    if (model / "model.onnx").is_file() or (model / "model_card.json").is_file():  # seq2seq dirs have no model.onnx
        return model
    digest = hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:12]
    target = ctx.models_dir / "_user" / f"{spec.name}-{digest}"
    if not (target / "model.onnx").is_file():
        export_user_hf_dir(model, target, spec.hf_task, ["Patient developed nausea after cisplatin."])
    return target


class PooledBuild(Protocol):
    def __call__(
        self,
        artifact_dir: Path,
        out_dir: Path,
        *,
        int8: bool,
        export_extra: dict[str, Any] | None = ...,
        threads: int = ...,
        fp16: Fp16Mode = ...,
    ) -> ModelCard: ...


def export_pooled(build: PooledBuild, ctx: TaskContext, artifact_dir: Path, model_dir: Path) -> ModelCard:
    """Build a pooled-classifier task's directory, keeping int8 only where its training kept it."""
    card = read_card(artifact_dir)
    return build(
        artifact_dir,
        model_dir,
        int8=bool(card.export.get("int8_keep", False)),
        export_extra={"artifact_fingerprint": artifact_fingerprint(artifact_dir)},
        threads=ctx.runtime.threads,
        fp16=ctx.settings.onnx_fp16,
    )
