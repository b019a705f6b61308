"""The drug-combination extractor as a refinement task: sentences with gold drug spans, exact-match F1 per
relation class (POS, COMB, NEG), retrieval over labelled candidate combinations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from cds.refine import WEIGHTS, Calibrated, RefineOptions, best_weight, read_settings
from models.drugcomb import DrugCombExtractor
from models.drugcomb.data import DrugCombDoc
from models.drugcomb.decode import CandidateDecision, decide
from models.drugcomb.evaluate import as_scored, gold_relations
from models.drugcomb.retrieval import INDEX_FILE, CandidateIndex, RetrievalDrugCombExtractor, build_index
from models.drugcomb.scoring import drugcomb_scores, label_prf

RELATION_LABELS = ("POS", "COMB", "NEG")


def relation_scores(docs: Sequence[DrugCombDoc], decisions: Sequence[Sequence[CandidateDecision]]) -> dict[str, Any]:
    """Per relation class exact P/R/F1, their mean F1 (``macro_f1``), and the four published scores."""
    gold, predicted = gold_relations(docs), as_scored(docs, decisions)
    per_label = {}
    for label in RELATION_LABELS:
        prf = label_prf(gold, predicted, label)
        per_label[label] = {"f1": prf.f1, "precision": prf.precision, "recall": prf.recall}
    return {
        "macro_f1": mean(row["f1"] for row in per_label.values()),
        "per_label": per_label,
        **drugcomb_scores(gold, predicted),
    }


class DrugCombRefineTask:
    name: str = "drugcomb"
    metric: str = "f1"
    summary_keys: tuple[str, ...] = ("f1_pos_exact", "f1_any_exact")

    def split_key(self, item: DrugCombDoc) -> str:
        return item.group_key  # a paper's sentences share their context: never on both sides of a split

    def labels(self, model: DrugCombExtractor) -> Sequence[str]:
        return RELATION_LABELS

    def score(self, model: DrugCombExtractor, items: Sequence[DrugCombDoc]) -> dict[str, Any]:
        decisions: list[list[CandidateDecision]] = []
        for at in range(0, len(items), 64):
            decisions += model.classify(items[at : at + 64])
        return relation_scores(items, decisions)

    def with_retrieval(
        self,
        model: DrugCombExtractor,
        index_items: Sequence[DrugCombDoc],
        calibration: Sequence[DrugCombDoc],
        options: RefineOptions,
    ) -> Calibrated[DrugCombExtractor]:
        base = model.base if isinstance(model, RetrievalDrugCombExtractor) else model
        index = build_index(base, index_items)
        parts = RetrievalDrugCombExtractor(base, index, 0.0, options.k).parts(calibration)
        config = base.config
        scores = {}
        for weight in WEIGHTS:
            decisions = [decide(c, p, config.threshold, config.strategy) for c, p in parts.probabilities(weight)]
            scores[weight] = round(relation_scores(calibration, decisions)["macro_f1"], 4)
        weight = best_weight(scores)
        final = RetrievalDrugCombExtractor(base, index.add(build_index(base, calibration)), weight, options.k)
        details = {
            "weight": weight,
            "macro_f1_by_weight": {str(k): v for k, v in scores.items()},
            "index_candidates": len(final.index),
        }
        return Calibrated(final, details)

    def retrieval_settings(self, model: DrugCombExtractor) -> dict[str, Any] | None:
        if not isinstance(model, RetrievalDrugCombExtractor):
            return None
        size = len(model.index)
        return {"weight": model.weight, "k": model.k, "tau": model.tau, "candidates": size, "size": size}

    def save_index(self, model: DrugCombExtractor, folder: Path) -> None:
        if isinstance(model, RetrievalDrugCombExtractor):
            model.index.save(folder / INDEX_FILE)

    def load_retrieval(
        self, base: DrugCombExtractor, folder: Path, model_fingerprint: str | None
    ) -> DrugCombExtractor:
        return load_drugcomb_retrieval(base, folder, model_fingerprint)


DRUGCOMB_TASK = DrugCombRefineTask()


def load_drugcomb_retrieval(
    base: DrugCombExtractor, folder: Path, model_fingerprint: str | None = None
) -> RetrievalDrugCombExtractor:
    """A refinement's kept retrieval around ``base``; an index built on another model's encoder is refused."""
    settings = read_settings(folder, "drugcomb", model_fingerprint)
    index = CandidateIndex.load(folder / INDEX_FILE)
    weight, k, tau = float(settings["weight"]), int(settings["k"]), float(settings["tau"])
    return RetrievalDrugCombExtractor(base, index, weight, k, tau)
