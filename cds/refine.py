"""Student-teacher refinement of a compact extractor from labelled examples (``oncovigil refine TASK``).

The ladder is the same for every task; what a task brings (``RefineTask``): how its items are named and
scored per label, and how a retrieval index is built, calibrated and saved.

1. Split the labels by a hash of the item key (a note, a sentence): 30 % held out for every score, the rest
   the *pool*.
2. Score the current model per label (the task's ``metric``: symptom accuracy for toxicity, exact-match F1
   per relation class for drugcomb) on the held-out items; labels under ``target`` need help.
3. Cheapest first, retrieval: index the pool with the model's own encoder, calibrate the kNN blend weight on
   a quarter of the pool (the rest is the index while calibrating; all of the pool after), re-score.
   Nothing is trained; more labels later mean a bigger index.
4. Labels still under target, LoRA fine-tuning: a new adapter and head trained on the pool within a time
   budget, scored alone and with retrieval (its own index: the encoder changed).
5. Each label is *fixed by* the cheapest strategy that brings it to the target. The configuration kept is
   the cheapest that fixes every label that any strategy fixes, and only if it beats the current model's
   held-out macro F1; otherwise nothing changes. A before/after report per label is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from cds.errors import RefineError

log = logging.getLogger(__name__)

STRATEGIES = ("current", "retrieval", "lora", "lora+retrieval")  # cheapest first
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
SETTINGS_FILE = "retrieval.json"

Item = TypeVar("Item")
Item_contra = TypeVar("Item_contra", contravariant=True)
Model = TypeVar("Model")


@dataclass(frozen=True)
class RefineOptions:
    target: float = 0.95
    heldout_share: float = 0.3
    calibration_share: float = 0.25
    k: int = 8
    finetune: bool = True
    min_notes: int = 20  # the least pool size, in items (notes or sentences)


@dataclass(frozen=True)
class Calibrated(Generic[Model]):
    """A model with retrieval, and what its calibration found (weight, scores by weight, index size)."""

    model: Model
    details: dict[str, Any]


class RefineTask(Protocol[Item_contra, Model]):
    """What the ladder needs to know about one task."""

    @property
    def name(self) -> str: ...

    @property
    def metric(self) -> str:
        """The per-label score compared with the target ("accuracy", "f1")."""
        ...

    @property
    def summary_keys(self) -> tuple[str, ...]:
        """Whole-set scores reported per strategy beside the macro F1."""
        ...

    def split_key(self, item: Item_contra) -> str:
        """What the held-out split hashes: items sharing a key (sentences of one paper) stay on one side."""
        ...

    def score(self, model: Model, items: Sequence[Item_contra]) -> dict[str, Any]:
        """``macro_f1``, ``per_label`` (label -> {metric: value, ...}) and the ``summary_keys``."""
        ...

    def labels(self, model: Model) -> Sequence[str]: ...

    def with_retrieval(
        self,
        model: Model,
        index_items: Sequence[Item_contra],
        calibration: Sequence[Item_contra],
        options: RefineOptions,
    ) -> Calibrated[Model]:
        """The model with an index of ``index_items`` whose weight is chosen on ``calibration``; the final
        model's index also holds the calibration items."""
        ...

    def retrieval_settings(self, model: Model) -> dict[str, Any] | None:
        """``None`` for a model without retrieval; else what ``retrieval.json`` records (and the index saved)."""
        ...

    def save_index(self, model: Model, folder: Path) -> None: ...


# (pool items, output folder) -> the fine-tuned model; the composition root trains and builds it
FineTune = Callable[[Sequence[Any], Path], Any]


def _bucket(item_id: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}:{item_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split(items: Sequence[Item], share: float, salt: str, key: Callable[[Item], str]) -> tuple[list[Item], list[Item]]:
    """(rest, share) by a hash of the item key: the same labels always split the same way."""
    rest = [n for n in items if _bucket(key(n), salt) >= share]
    part = [n for n in items if _bucket(key(n), salt) < share]
    return rest, part


def best_weight(scores: dict[float, float]) -> float:
    """The blend weight with the best score (the smaller weight on ties)."""
    return max(scores, key=lambda w: (scores[w], -w))


def calibrated_retrieval(
    task: RefineTask[Item, Model], model: Model, pool: Sequence[Item], options: RefineOptions
) -> Calibrated[Model]:
    index_part, calibration = split(pool, options.calibration_share, "calibration", task.split_key)
    return task.with_retrieval(model, index_part, calibration, options)


def run_ladder(
    task: RefineTask[Item, Model],
    current: Model,
    labels: Sequence[Item],
    out_dir: Path,
    options: RefineOptions,
    fine_tune: FineTune | None,
    model_fingerprint: str | None = None,
) -> dict[str, Any]:
    """The ladder of the module docstring. ``model_fingerprint`` (the sha256 of the current model's ONNX file)
    goes into ``retrieval.json``: an index holds that encoder's vectors and is refused next to any other."""
    started = time.perf_counter()
    pool, heldout = split(labels, options.heldout_share, "heldout", task.split_key)
    if len(pool) < options.min_notes or len(heldout) < 5:
        raise RefineError(
            "OV-0131",
            f"{len(labels)} labelled examples give a pool of {len(pool)} and {len(heldout)} held out; "
            f"give at least {options.min_notes + 10} labelled examples",
        )
    scores: dict[str, dict[str, Any]] = {"current": task.score(current, heldout)}
    # a label the held-out items never state has no score to improve
    names = [n for n in task.labels(current) if n in scores["current"]["per_label"]]
    timings: dict[str, float] = {}
    under = [s for s in names if scores["current"]["per_label"][s][task.metric] < options.target]
    details: dict[str, Any] = {}
    chosen: dict[str, Any] = {"current": current}
    if under:
        t0 = time.perf_counter()
        rag = calibrated_retrieval(task, current, pool, options)
        details["retrieval"] = rag.details
        scores["retrieval"] = task.score(rag.model, heldout)
        timings["retrieval"] = round(time.perf_counter() - t0, 1)
        chosen["retrieval"] = rag.model
        still = [s for s in under if scores["retrieval"]["per_label"][s][task.metric] < options.target]
        if still and options.finetune and fine_tune is not None:
            t0 = time.perf_counter()
            tuned = fine_tune(pool, out_dir / "lora")
            timings["lora"] = round(time.perf_counter() - t0, 1)
            trained = out_dir / "lora" / "training.json"
            if trained.is_file():
                details["lora"] = json.loads(trained.read_text(encoding="utf-8"))
            scores["lora"] = task.score(tuned, heldout)
            chosen["lora"] = tuned
            t0 = time.perf_counter()
            tuned_rag = calibrated_retrieval(task, tuned, pool, options)
            details["lora+retrieval"] = tuned_rag.details
            scores["lora+retrieval"] = task.score(tuned_rag.model, heldout)
            timings["lora+retrieval"] = round(time.perf_counter() - t0, 1)
            chosen["lora+retrieval"] = tuned_rag.model
    per_label = _per_label(scores, names, options.target, task.metric)
    fixable = {s for s, row in per_label.items() if row["fixed_by"] not in (None, "current")}
    kept = _keep(scores, per_label, fixable, task.metric)
    report: dict[str, Any] = {
        "task": task.name,
        "labels": len(labels),
        "pool_items": len(pool),
        "heldout_items": len(heldout),
        "metric": task.metric,
        f"target_{task.metric}": options.target,
        "under_target_before": under,
        "summary_keys": list(task.summary_keys),
        "kept": kept,
        "macro_f1": {k: round(v["macro_f1"], 4) for k, v in scores.items()},
        "per_label": per_label,
        "details": details,
        "seconds": {**timings, "total": round(time.perf_counter() - started, 1)},
    }
    for key in task.summary_keys:
        report[key] = {k: round(v[key], 4) for k, v in scores.items()}
    _write(task, out_dir, report, chosen.get(kept), model_fingerprint if kept == "retrieval" else None)
    return report


def _per_label(scores: dict[str, dict[str, Any]], names: Sequence[str], target: float, metric: str) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name in names:
        measures = scores["current"]["per_label"][name].keys()
        row: dict[str, Any] = {
            m: {k: round(v["per_label"][name][m], 4) for k, v in scores.items()} for m in measures
        }
        row["fixed_by"] = next((k for k in STRATEGIES if k in row[metric] and row[metric][k] >= target), None)
        rows[name] = row
    return rows


def _keep(scores: dict[str, dict[str, Any]], per_label: dict[str, Any], fixable: set[str], metric: str) -> str:
    """The cheapest strategy that fixes all fixable labels and beats the current macro F1; else "current"."""
    baseline = scores["current"]["macro_f1"]
    for strategy in STRATEGIES[1:]:
        if strategy not in scores or scores[strategy]["macro_f1"] <= baseline:
            continue
        if all(per_label[s][metric][strategy] >= per_label[s][metric]["current"] for s in fixable) and all(
            per_label[s]["fixed_by"] is not None
            and STRATEGIES.index(per_label[s]["fixed_by"]) <= STRATEGIES.index(strategy)
            for s in fixable
        ):
            return strategy
    improving = [k for k in STRATEGIES[1:] if k in scores and scores[k]["macro_f1"] > baseline]
    return max(improving, key=lambda k: scores[k]["macro_f1"]) if improving else "current"


def _write(
    task: RefineTask[Any, Any], out_dir: Path, report: dict[str, Any], kept: Any, fingerprint: str | None
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = task.retrieval_settings(kept) if report["kept"] == "retrieval" else None
    if settings is not None:
        task.save_index(kept, out_dir)
        settings = {**settings, "model_onnx_sha256": fingerprint}
        (out_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    if report["kept"] not in ("lora", "lora+retrieval"):
        shutil.rmtree(out_dir / "lora", ignore_errors=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")


def markdown(report: dict[str, Any]) -> str:
    strategies = [k for k in STRATEGIES if k in report["macro_f1"]]
    metric = report["metric"]
    lines = [
        f"# Refinement of {report['task']}: kept `{report['kept']}`",
        "",
        f"{report['labels']} labelled examples: {report['pool_items']} in the pool, {report['heldout_items']} "
        f"held out. Target {metric} per label {report[f'target_{metric}']}.",
        "",
        f"| label ({metric}) | " + " | ".join(strategies) + " | fixed by |",
        "|---|" + "---|" * len(strategies) + "---|",
    ]
    for label, row in report["per_label"].items():
        cells = " | ".join(f"{row[metric][k]:.3f}" for k in strategies)
        lines.append(f"| {label} | {cells} | {row['fixed_by'] or 'not fixed'} |")
    lines.append("| **macro F1** | " + " | ".join(f"**{report['macro_f1'][k]:.3f}**" for k in strategies) + " | |")
    for key in report.get("summary_keys", ()):
        lines.append(f"| {key} | " + " | ".join(f"{report[key][k]:.3f}" for k in strategies) + " | |")
    lines += [
        "",
        f"Seconds: {report['seconds']}",
        "",
    ]
    return "\n".join(lines)


def read_settings(folder: Path, task: str, model_fingerprint: str | None) -> dict[str, Any]:
    """A kept retrieval's ``retrieval.json``; one recorded for another model's encoder is refused."""
    settings: dict[str, Any] = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    recorded = settings.get("model_onnx_sha256")
    if model_fingerprint is not None and recorded != model_fingerprint:
        raise RefineError(
            "OV-0132",
            f"the retrieval index in {folder} was built on another {task} model; run `oncovigil refine` again",
        )
    return settings
