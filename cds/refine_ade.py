"""The ADE extractor as a refinement task: ADE-Corpus-V2-format sentences, exact-match F1 for drug mentions,
adverse-event mentions and drug-event pairs, retrieval over the tagger's labelled tokens."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from cds.refine import WEIGHTS, Calibrated, FineTune, RefineOptions, best_weight, read_settings, refine
from models.ade import AdeExtractor, corpus_metrics
from models.ade.corpus import AdeSentence
from models.ade.training import corpus_examples
from models.token_retrieval import INDEX_FILE, RetrievalTokenRunner, TokenIndex, build_token_index

# label -> the corpus_metrics prefix it is scored by
ADE_LABELS: dict[str, str] = {"DRUG": "drug", "AE": "ade", "PAIR": "pair"}


def ade_scores(sentences: Sequence[AdeSentence], model: AdeExtractor) -> dict[str, Any]:
    """Per label exact P/R/F1, their mean F1 (``macro_f1``) and the eval contract's figures."""
    metrics = corpus_metrics(sentences, list(model.pipe((s.text for s in sentences), batch_size=64)))
    per_label = {
        label: {m: metrics[f"{prefix}_{m}"] for m in ("f1", "precision", "recall")}
        for label, prefix in ADE_LABELS.items()
    }
    return {**metrics, "macro_f1": mean(row["f1"] for row in per_label.values()), "per_label": per_label}


def _base_runner(model: AdeExtractor) -> Any:
    runner = model.runner
    return runner.base if isinstance(runner, RetrievalTokenRunner) else runner


def with_runner(model: AdeExtractor, runner: Any) -> AdeExtractor:
    return AdeExtractor(runner, model.labels, model.ctcae, model.config)


class AdeRefineTask:
    name: str = "ade"
    metric: str = "f1"
    summary_keys: tuple[str, ...] = ("pair_f1", "pair_f1_relaxed")

    def split_key(self, item: AdeSentence) -> str:
        return item.pmid  # sentences of one abstract stay on one side

    def labels(self, model: AdeExtractor) -> Sequence[str]:
        return tuple(ADE_LABELS)

    def score(self, model: AdeExtractor, items: Sequence[AdeSentence]) -> dict[str, Any]:
        return ade_scores(items, model)

    def with_retrieval(
        self,
        model: AdeExtractor,
        index_items: Sequence[AdeSentence],
        calibration: Sequence[AdeSentence],
        options: RefineOptions,
    ) -> Calibrated[AdeExtractor]:
        base = _base_runner(model)
        index = build_token_index(base, model.labels, corpus_examples(index_items))
        runner = RetrievalTokenRunner(base, index, 0.0, options.k)
        runner.remember = True  # one encoder pass over the calibration sentences for every weight
        trial = with_runner(model, runner)
        scores = {}
        for weight in WEIGHTS:
            runner.weight = weight
            scores[weight] = round(ade_scores(calibration, trial)["macro_f1"], 4)
        weight = best_weight(scores)
        everything = index.add(build_token_index(base, model.labels, corpus_examples(calibration)))
        final = with_runner(model, RetrievalTokenRunner(base, everything, weight, options.k))
        by_weight = {str(k): v for k, v in scores.items()}
        details = {"weight": weight, "macro_f1_by_weight": by_weight, "index_tokens": len(everything)}
        return Calibrated(final, details)

    def retrieval_settings(self, model: AdeExtractor) -> dict[str, Any] | None:
        runner = model.runner
        if not isinstance(runner, RetrievalTokenRunner):
            return None
        return {"weight": runner.weight, "k": runner.k, "tau": runner.tau, "tokens": len(runner.index)}

    def save_index(self, model: AdeExtractor, folder: Path) -> None:
        if isinstance(model.runner, RetrievalTokenRunner):
            model.runner.index.save(folder / INDEX_FILE)


def refine_ade(
    current: AdeExtractor,
    labels: Sequence[AdeSentence],
    out_dir: Path,
    options: RefineOptions,
    fine_tune: FineTune | None,
    model_fingerprint: str | None = None,
) -> dict[str, Any]:
    return refine(AdeRefineTask(), current, labels, out_dir, options, fine_tune, model_fingerprint)


def load_ade_retrieval(base: AdeExtractor, folder: Path, model_fingerprint: str | None = None) -> AdeExtractor:
    """A refinement's kept token retrieval around ``base``; an index built on another model is refused."""
    settings = read_settings(folder, "ade", model_fingerprint)
    index = TokenIndex.load(folder / INDEX_FILE)
    runner = RetrievalTokenRunner(
        _base_runner(base), index, float(settings["weight"]), int(settings["k"]), float(settings["tau"])
    )
    return with_runner(base, runner)
