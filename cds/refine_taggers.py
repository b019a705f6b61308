"""The token taggers as refinement tasks, with retrieval over their labelled tokens (``models.token_retrieval``).

- ``ade``: ADE-Corpus-V2-format sentences; exact-match F1 of drug mentions, event mentions and drug-event
  pairs; split by PubMed id.
- ``phenotype``: labelled notes in the ``eval phenotype`` format (text, truth, and the spans that index them);
  F1 per field (site, stage group, HER2, ...) over the fields the held-out notes state; split by note text.

Both keep the extractor and swap its runner for one that blends the labelled tokens' vote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any, Generic, Protocol, TypeVar

from cds.refine import WEIGHTS, Calibrated, RefineOptions, best_weight, read_settings
from models.ade import AdeExtractor, corpus_metrics
from models.ade.corpus import AdeSentence
from models.ade.training import corpus_examples
from models.encoder_infer import TokenClassifierRunner
from models.encoder_train import SpanExample
from models.phenotype import PhenotypeExtractor
from models.phenotype.data import LabelledNote
from models.phenotype.metrics import field_metrics
from models.phenotype.training import sentence_examples
from models.token_retrieval import INDEX_FILE, RetrievalTokenRunner, TokenIndex, build_token_index


class Tagger(Protocol):
    runner: TokenClassifierRunner
    labels: list[str]


T = TypeVar("T", bound=Tagger)
Item = TypeVar("Item")

# ADE label -> the corpus_metrics prefix it is scored by
ADE_LABELS: dict[str, str] = {"DRUG": "drug", "AE": "ade", "PAIR": "pair"}


def base_runner(model: Tagger) -> TokenClassifierRunner:
    runner = model.runner
    return runner.base if isinstance(runner, RetrievalTokenRunner) else runner


@dataclass(frozen=True)
class TaggerRefineTask(Generic[Item, T]):
    """What differs between taggers: naming, scoring, examples, and how an extractor is rebuilt on a runner."""

    name: str
    summary_keys: tuple[str, ...]
    key: Callable[[Item], str]
    label_names: tuple[str, ...]
    scorer: Callable[[T, Sequence[Item]], dict[str, Any]]
    examples: Callable[[Sequence[Item]], list[SpanExample]]
    rebuild: Callable[[T, TokenClassifierRunner], T]
    metric: str = "f1"

    def split_key(self, item: Item) -> str:
        return self.key(item)

    def labels(self, model: T) -> Sequence[str]:
        return self.label_names

    def score(self, model: T, items: Sequence[Item]) -> dict[str, Any]:
        return self.scorer(model, items)

    def with_retrieval(
        self, model: T, index_items: Sequence[Item], calibration: Sequence[Item], options: RefineOptions
    ) -> Calibrated[T]:
        base = base_runner(model)
        index = build_token_index(base, model.labels, self.examples(index_items))
        runner = RetrievalTokenRunner(base, index, 0.0, options.k)
        runner.remember = True  # one encoder pass over the calibration items for every weight
        trial = self.rebuild(model, runner)
        scores = {}
        for weight in WEIGHTS:
            runner.weight = weight
            scores[weight] = round(self.scorer(trial, calibration)["macro_f1"], 4)
        weight = best_weight(scores)
        everything = index.add(build_token_index(base, model.labels, self.examples(calibration)))
        final = self.rebuild(model, RetrievalTokenRunner(base, everything, weight, options.k))
        by_weight = {str(k): v for k, v in scores.items()}
        return Calibrated(final, {"weight": weight, "macro_f1_by_weight": by_weight, "index_tokens": len(everything)})

    def retrieval_settings(self, model: T) -> dict[str, Any] | None:
        runner = model.runner
        if not isinstance(runner, RetrievalTokenRunner):
            return None
        size = len(runner.index)
        return {"weight": runner.weight, "k": runner.k, "tau": runner.tau, "tokens": size, "size": size}

    def save_index(self, model: T, folder: Path) -> None:
        if isinstance(model.runner, RetrievalTokenRunner):
            model.runner.index.save(folder / INDEX_FILE)

    def load_retrieval(self, base: T, folder: Path, model_fingerprint: str | None) -> T:
        """A refinement's kept token retrieval around ``base``; an index built on another model is refused."""
        settings = read_settings(folder, self.name, model_fingerprint)
        index = TokenIndex.load(folder / INDEX_FILE)
        weight, k, tau = float(settings["weight"]), int(settings["k"]), float(settings["tau"])
        return self.rebuild(base, RetrievalTokenRunner(base_runner(base), index, weight, k, tau))


def ade_scores(model: AdeExtractor, sentences: Sequence[AdeSentence]) -> dict[str, Any]:
    """Per label exact P/R/F1, their mean F1 (``macro_f1``) and the eval contract's figures."""
    metrics = corpus_metrics(sentences, list(model.pipe((s.text for s in sentences), batch_size=64)))
    per_label = {
        label: {m: metrics[f"{prefix}_{m}"] for m in ("f1", "precision", "recall")}
        for label, prefix in ADE_LABELS.items()
    }
    return {**metrics, "macro_f1": mean(row["f1"] for row in per_label.values()), "per_label": per_label}


def phenotype_scores(model: PhenotypeExtractor, notes: Sequence[LabelledNote]) -> dict[str, Any]:
    """F1 per field the notes state (a field no held-out note states has nothing to score)."""
    predictions = [p.values() for p in model.pipe((n.text for n in notes), batch_size=32)]
    metrics = field_metrics([n.truth for n in notes], predictions)
    per_label = {
        name: {"f1": row["f1"], "precision": row["precision"], "recall": row["recall"], "exact": row["exact_match"]}
        for name, row in metrics["per_field"].items()
        if row["support"]
    }
    return {**metrics, "micro_f1": metrics["micro"]["f1"], "per_label": per_label}


def phenotype_examples(notes: Sequence[LabelledNote]) -> list[SpanExample]:
    """Sentence examples of the notes that carry spans (a note without spans cannot label its tokens)."""
    return sentence_examples([{"text": n.text, "spans": list(n.spans)} for n in notes if n.spans])


def _note_key(note: LabelledNote) -> str:
    return hashlib.sha256(note.text.encode()).hexdigest()


ADE_TASK: TaggerRefineTask[AdeSentence, AdeExtractor] = TaggerRefineTask(
    name="ade",
    summary_keys=("pair_f1", "pair_f1_relaxed"),
    key=lambda s: s.pmid,  # sentences of one abstract stay on one side
    label_names=tuple(ADE_LABELS),
    scorer=ade_scores,
    examples=corpus_examples,
    rebuild=lambda m, r: AdeExtractor(r, m.labels, m.ctcae, m.config),
)

PHENOTYPE_TASK: TaggerRefineTask[LabelledNote, PhenotypeExtractor] = TaggerRefineTask(
    name="phenotype",
    summary_keys=("micro_f1", "macro_exact_match"),
    key=_note_key,
    label_names=(),  # the fields the labelled notes state: ``phenotype_task(labels)``
    scorer=phenotype_scores,
    examples=phenotype_examples,
    rebuild=lambda m, r: PhenotypeExtractor(r, m.labels, m.config),
)


def phenotype_task(labels: Sequence[LabelledNote]) -> TaggerRefineTask[LabelledNote, PhenotypeExtractor]:
    """The phenotype task scored on the fields the labelled notes state."""
    from dataclasses import replace

    from models.phenotype.labels import FIELDS

    stated = tuple(name for name in FIELDS if any(n.truth.get(name) is not None for n in labels))
    return replace(PHENOTYPE_TASK, label_names=stated)
