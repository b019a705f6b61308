"""The toxicity extractor as a refinement task: notes scored per symptom (accuracy), sentence-window retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cds.refine import WEIGHTS, Calibrated, RefineOptions, best_weight, read_settings
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

Toxicity = ToxicityExtractor | RetrievalToxicityExtractor


class ToxicityRefineTask:
    name: str = "toxicity"
    metric: str = "accuracy"
    summary_keys: tuple[str, ...] = ("accuracy",)

    def split_key(self, item: ToxicityNote) -> str:
        return item.note_id

    def labels(self, model: Toxicity) -> Sequence[str]:
        return model.symptoms

    def score(self, model: Toxicity, items: Sequence[ToxicityNote]) -> dict[str, Any]:
        scores = score_notes(model, items)  # type: ignore[arg-type]
        return {**scores, "per_label": scores["per_symptom"]}

    def with_retrieval(
        self,
        model: Toxicity,
        index_items: Sequence[ToxicityNote],
        calibration: Sequence[ToxicityNote],
        options: RefineOptions,
    ) -> Calibrated[Toxicity]:
        base = model.base if isinstance(model, RetrievalToxicityExtractor) else model
        index, skipped = build_index(base, index_items)
        tuning = calibrate_weight(RetrievalToxicityExtractor(base, index, 0.0, options.k), calibration)
        extra, skipped_too = build_index(base, calibration)
        final = RetrievalToxicityExtractor(base, index.add(extra), tuning["weight"], options.k)
        unusable = skipped + skipped_too
        return Calibrated(final, {**tuning, "index_windows": len(final.index), "notes_without_spans": unusable})

    def retrieval_settings(self, model: Toxicity) -> dict[str, Any] | None:
        if not isinstance(model, RetrievalToxicityExtractor):
            return None
        size = len(model.index)
        return {"weight": model.weight, "k": model.k, "tau": model.tau, "windows": size, "size": size}

    def save_index(self, model: Toxicity, folder: Path) -> None:
        if isinstance(model, RetrievalToxicityExtractor):
            model.index.save(folder / INDEX_FILE)

    def load_retrieval(self, base: Toxicity, folder: Path, model_fingerprint: str | None) -> Toxicity:
        plain = base.base if isinstance(base, RetrievalToxicityExtractor) else base
        return load_retrieval(plain, folder, model_fingerprint)


def calibrate_weight(extractor: RetrievalToxicityExtractor, notes: Sequence[ToxicityNote]) -> dict[str, Any]:
    """The blend weight with the best macro F1 on ``notes`` (the smaller weight on ties); one ONNX pass."""
    texts = [n.text for n in notes]
    parts = extractor.parts(note_pieces(extractor.base, texts))
    gold = [{s: (n.truth[s].status, n.truth[s].grade) for s in extractor.symptoms} for n in notes]
    scores = {}
    for weight in WEIGHTS:
        predicted = [as_truth_map(p) for p in predict_blended(extractor, texts, parts, weight)]
        scores[weight] = round(toxicity_metrics(gold, predicted, extractor.symptoms)["macro_f1"], 4)
    return {"weight": best_weight(scores), "macro_f1_by_weight": {str(k): v for k, v in scores.items()}}


TOXICITY_TASK = ToxicityRefineTask()


def load_retrieval(
    base: ToxicityExtractor, folder: Path, model_fingerprint: str | None = None
) -> RetrievalToxicityExtractor:
    """A refinement's kept retrieval (index + calibrated weight) around ``base``.

    With ``model_fingerprint`` an index built on another model's encoder is refused (its vectors would not
    be comparable).
    """
    settings = read_settings(folder, "toxicity", model_fingerprint)
    index = RetrievalIndex.load(folder / INDEX_FILE)
    return RetrievalToxicityExtractor(
        base, index, float(settings["weight"]), int(settings["k"]), float(settings["tau"])
    )
