"""Student-teacher refinement of a compact extractor from labelled notes (``oncovigil refine toxicity``).

1. Split the labels by a hash of the note id: 30 % held out for every score, the rest the *pool*.
2. Score the current model per label (symptom accuracy) on the held-out notes; labels under ``target``
   need help.
3. Cheapest first, retrieval: index the pool's sentences with the model's own encoder, calibrate the kNN
   blend weight on a quarter of the pool (the rest is the index while calibrating; all of the pool after),
   re-score. Nothing is trained; more labels later mean a bigger index.
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
from typing import Any

from cds.errors import RefineError
from models.toxicity import ToxicityExtractor, ToxicityNote
from models.toxicity.evaluate import score_notes
from models.toxicity.head import as_truth_map
from models.toxicity.metrics import toxicity_metrics
from models.toxicity.retrieval import (
    INDEX_FILE,
    RetrievalIndex,
    RetrievalToxicityExtractor,
    build_index,
    note_pieces,
    predict_blended,
)

log = logging.getLogger(__name__)

STRATEGIES = ("current", "retrieval", "lora", "lora+retrieval")  # cheapest first
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class RefineOptions:
    target: float = 0.95
    heldout_share: float = 0.3
    calibration_share: float = 0.25
    k: int = 8
    finetune: bool = True
    min_notes: int = 20


# (pool notes, output folder) -> the fine-tuned extractor; the composition root trains and builds it
FineTune = Callable[[Sequence[ToxicityNote], Path], ToxicityExtractor]


def _bucket(note_id: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}:{note_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split(notes: Sequence[ToxicityNote], share: float, salt: str) -> tuple[list[ToxicityNote], list[ToxicityNote]]:
    """(rest, share) by a hash of the note id: the same labels always split the same way."""
    rest = [n for n in notes if _bucket(n.note_id, salt) >= share]
    part = [n for n in notes if _bucket(n.note_id, salt) < share]
    return rest, part


def calibrate_weight(extractor: RetrievalToxicityExtractor, notes: Sequence[ToxicityNote]) -> dict[str, Any]:
    """The blend weight with the best macro F1 on ``notes`` (the smaller weight on ties)."""
    texts = [n.text for n in notes]
    parts = extractor.parts(note_pieces(extractor.base, texts))
    gold = [{s: (n.truth[s].status, n.truth[s].grade) for s in extractor.symptoms} for n in notes]
    scores = {}
    for weight in WEIGHTS:
        predicted = [as_truth_map(p) for p in predict_blended(extractor, texts, parts, weight)]
        scores[weight] = round(toxicity_metrics(gold, predicted, extractor.symptoms)["macro_f1"], 4)
    best = max(scores, key=lambda w: (scores[w], -w))
    return {"weight": best, "macro_f1_by_weight": {str(k): v for k, v in scores.items()}}


def _retrieval(
    base: ToxicityExtractor, pool: Sequence[ToxicityNote], options: RefineOptions
) -> tuple[RetrievalToxicityExtractor, dict[str, Any]]:
    index_part, calibration = split(pool, options.calibration_share, "calibration")
    index, skipped = build_index(base, index_part)
    tuning = calibrate_weight(RetrievalToxicityExtractor(base, index, 0.0, options.k), calibration)
    extra, skipped_too = build_index(base, calibration)
    final = RetrievalToxicityExtractor(base, index.add(extra), tuning["weight"], options.k)
    return final, {**tuning, "index_windows": len(final.index), "notes_without_spans": skipped + skipped_too}


def refine_toxicity(
    current: ToxicityExtractor,
    labels: Sequence[ToxicityNote],
    out_dir: Path,
    options: RefineOptions,
    fine_tune: FineTune | None,
    model_fingerprint: str | None = None,
) -> dict[str, Any]:
    """``model_fingerprint`` (the sha256 of the current model's ONNX file) goes into ``retrieval.json``: an
    index holds that encoder's embeddings and is refused next to any other model."""
    started = time.perf_counter()
    pool, heldout = split(labels, options.heldout_share, "heldout")
    if len(pool) < options.min_notes or len(heldout) < 5:
        raise RefineError(
            "OV-0131",
            f"{len(labels)} labelled notes give a pool of {len(pool)} and {len(heldout)} held out; "
            f"give at least {options.min_notes + 10} labelled notes",
        )
    symptoms = current.symptoms
    scores: dict[str, dict[str, Any]] = {"current": score_notes(current, heldout)}
    timings: dict[str, float] = {}
    under = [s for s in symptoms if scores["current"]["per_symptom"][s]["accuracy"] < options.target]
    details: dict[str, Any] = {}
    chosen_models: dict[str, Any] = {"current": current}
    if under:
        t0 = time.perf_counter()
        rag, details["retrieval"] = _retrieval(current, pool, options)
        scores["retrieval"] = score_notes(rag, heldout)  # type: ignore[arg-type]
        timings["retrieval"] = round(time.perf_counter() - t0, 1)
        chosen_models["retrieval"] = rag
        still = [s for s in under if scores["retrieval"]["per_symptom"][s]["accuracy"] < options.target]
        if still and options.finetune and fine_tune is not None:
            t0 = time.perf_counter()
            tuned = fine_tune(pool, out_dir / "lora")
            timings["lora"] = round(time.perf_counter() - t0, 1)
            trained = out_dir / "lora" / "training.json"
            if trained.is_file():
                details["lora"] = json.loads(trained.read_text(encoding="utf-8"))
            scores["lora"] = score_notes(tuned, heldout)
            chosen_models["lora"] = tuned
            t0 = time.perf_counter()
            tuned_rag, details["lora+retrieval"] = _retrieval(tuned, pool, options)
            scores["lora+retrieval"] = score_notes(tuned_rag, heldout)  # type: ignore[arg-type]
            timings["lora+retrieval"] = round(time.perf_counter() - t0, 1)
            chosen_models["lora+retrieval"] = tuned_rag
    per_label = _per_label(scores, symptoms, options.target)
    fixable = {s for s, row in per_label.items() if row["fixed_by"] not in (None, "current")}
    kept = _keep(scores, per_label, fixable)
    report = {
        "task": "toxicity",
        "labels": len(labels),
        "pool_notes": len(pool),
        "heldout_notes": len(heldout),
        "target_accuracy": options.target,
        "under_target_before": under,
        "kept": kept,
        "macro_f1": {k: round(v["macro_f1"], 4) for k, v in scores.items()},
        "accuracy": {k: round(v["accuracy"], 4) for k, v in scores.items()},
        "per_label": per_label,
        "details": details,
        "seconds": {**timings, "total": round(time.perf_counter() - started, 1)},
    }
    _write(out_dir, report, chosen_models.get(kept), model_fingerprint if kept == "retrieval" else None)
    return report


def _per_label(scores: dict[str, dict[str, Any]], symptoms: Sequence[str], target: float) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for symptom in symptoms:
        accuracy = {k: round(v["per_symptom"][symptom]["accuracy"], 4) for k, v in scores.items()}
        f1 = {k: round(v["per_symptom"][symptom]["f1"], 4) for k, v in scores.items()}
        fixed_by = next((k for k in STRATEGIES if k in accuracy and accuracy[k] >= target), None)
        rows[symptom] = {"accuracy": accuracy, "f1": f1, "fixed_by": fixed_by}
    return rows


def _keep(scores: dict[str, dict[str, Any]], per_label: dict[str, Any], fixable: set[str]) -> str:
    """The cheapest strategy that fixes all fixable labels and beats the current macro F1; else "current"."""
    baseline = scores["current"]["macro_f1"]
    for strategy in STRATEGIES[1:]:
        if strategy not in scores or scores[strategy]["macro_f1"] <= baseline:
            continue
        if all(per_label[s]["accuracy"][strategy] >= per_label[s]["accuracy"]["current"] for s in fixable) and all(
            per_label[s]["fixed_by"] is not None
            and STRATEGIES.index(per_label[s]["fixed_by"]) <= STRATEGIES.index(strategy)
            for s in fixable
        ):
            return strategy
    improving = [k for k in STRATEGIES[1:] if k in scores and scores[k]["macro_f1"] > baseline]
    return max(improving, key=lambda k: scores[k]["macro_f1"]) if improving else "current"


def _write(out_dir: Path, report: dict[str, Any], kept: Any, fingerprint: str | None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(kept, RetrievalToxicityExtractor):
        kept.index.save(out_dir / INDEX_FILE)
        retrieval = {
            "weight": kept.weight,
            "k": kept.k,
            "tau": kept.tau,
            "windows": len(kept.index),
            "model_onnx_sha256": fingerprint,
        }
        (out_dir / "retrieval.json").write_text(json.dumps(retrieval, indent=2) + "\n", encoding="utf-8")
    if report["kept"] not in ("lora", "lora+retrieval"):
        shutil.rmtree(out_dir / "lora", ignore_errors=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")


def markdown(report: dict[str, Any]) -> str:
    strategies = [k for k in STRATEGIES if k in report["macro_f1"]]
    lines = [
        f"# Refinement of {report['task']}: kept `{report['kept']}`",
        "",
        f"{report['labels']} labelled notes: {report['pool_notes']} in the pool, {report['heldout_notes']} held out. "
        f"Target accuracy per label {report['target_accuracy']}.",
        "",
        "| label | " + " | ".join(strategies) + " | fixed by |",
        "|---|" + "---|" * len(strategies) + "---|",
    ]
    for label, row in report["per_label"].items():
        cells = " | ".join(f"{row['accuracy'][k]:.3f}" for k in strategies)
        lines.append(f"| {label} | {cells} | {row['fixed_by'] or 'not fixed'} |")
    lines += [
        "| **macro F1** | " + " | ".join(f"**{report['macro_f1'][k]:.3f}**" for k in strategies) + " | |",
        "",
        f"Seconds: {report['seconds']}",
        "",
    ]
    return "\n".join(lines)


def load_retrieval(
    base: ToxicityExtractor, folder: Path, model_fingerprint: str | None = None
) -> RetrievalToxicityExtractor:
    """A refinement's kept retrieval (index + calibrated weight) around ``base``.

    With ``model_fingerprint`` an index built on another model's encoder is refused (its vectors would not
    be comparable).
    """
    settings = json.loads((folder / "retrieval.json").read_text(encoding="utf-8"))
    recorded = settings.get("model_onnx_sha256")
    if model_fingerprint is not None and recorded != model_fingerprint:
        raise RefineError(
            "OV-0132",
            f"the retrieval index in {folder} was built on another toxicity model; run `oncovigil refine` again",
        )
    index = RetrievalIndex.load(folder / INDEX_FILE)
    return RetrievalToxicityExtractor(
        base, index, float(settings["weight"]), int(settings["k"]), float(settings["tau"])
    )
