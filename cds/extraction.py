"""Loads the extractors named by their model cards and runs them over batches of notes.

The model directories live under ``settings.models_dir/<task>``; a missing task is reported and skipped
(the sync still runs what exists), a tampered directory is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models import AdeFinding, DrugCombination, RuntimeConfig, ToxicityFinding, default_registry, read_card
from models.phenotype import Phenotype

log = logging.getLogger(__name__)

EXTRACTION_TASKS = ("ade", "toxicity", "drugcomb", "phenotype")


@dataclass
class NoteFindings:
    ade: list[AdeFinding] = field(default_factory=list)
    toxicity: list[ToxicityFinding] = field(default_factory=list)
    combinations: list[DrugCombination] = field(default_factory=list)
    phenotype: Phenotype | None = None


@dataclass
class LoadedExtractors:
    """The extractors that exist, by task, with the name and version their model card gives."""

    extractors: dict[str, Any]
    versions: dict[str, str]
    missing: list[str]

    def run(self, texts: Sequence[str]) -> list[NoteFindings]:
        """Runs every loaded extractor over one batch; pure apart from the ONNX sessions (thread-safe)."""
        results = [NoteFindings() for _ in texts]
        if not texts:
            return results
        if "ade" in self.extractors:
            for slot, found in zip(results, self.extractors["ade"].predict(texts), strict=True):
                slot.ade = list(found)
        if "toxicity" in self.extractors:
            for slot, found in zip(results, self.extractors["toxicity"].predict(texts), strict=True):
                slot.toxicity = list(found)
        if "drugcomb" in self.extractors:
            for slot, found in zip(results, self.extractors["drugcomb"].predict(texts), strict=True):
                slot.combinations = list(found)
        if "phenotype" in self.extractors:
            for slot, phenotype in zip(results, self.extractors["phenotype"].predict(texts), strict=True):
                slot.phenotype = phenotype
        return results

    def model_label(self, task: str) -> tuple[str, str]:
        return (f"oncovigil-{task}", self.versions.get(task, "unknown"))


# A refinement's kept retrieval index (``oncovigil refine TASK --install``) is used by the sync from here.
RETRIEVAL_DIRS: dict[str, str] = {
    "toxicity": "toxicity_retrieval",
    "drugcomb": "drugcomb_retrieval",
    "ade": "ade_retrieval",
    "phenotype": "phenotype_retrieval",
}


def _with_retrieval(task: str, base: Any, version: str, models_dir: Path, card: Any) -> tuple[Any, str]:
    """The extractor with its installed retrieval index; the plain one when the index is stale."""
    from cds.errors import RefineError
    from cds.refine_drugcomb import DRUGCOMB_TASK
    from cds.refine_taggers import ADE_TASK, PHENOTYPE_TASK
    from cds.refine_toxicity import TOXICITY_TASK
    from models.errors import ModelError

    tasks: dict[str, Any] = {
        "toxicity": TOXICITY_TASK,
        "drugcomb": DRUGCOMB_TASK,
        "ade": ADE_TASK,
        "phenotype": PHENOTYPE_TASK,
    }
    refine_task = tasks[task]
    try:
        wrapped = refine_task.load_retrieval(base, models_dir / RETRIEVAL_DIRS[task], card.files.get("model.onnx"))
    except (RefineError, ModelError) as exc:
        log.warning("retrieval index not used", extra={"task": task, "reason": exc.code})
        return base, version
    knn = refine_task.retrieval_settings(wrapped)
    log.info("retrieval index loaded", extra={"task": task, "size": knn["size"], "weight": knn["weight"]})
    # the version changes with the index, so notes are read again when labels were added
    return wrapped, f"{version}+knn{knn['size']}w{knn['weight']}"


def load_extractors(
    models_dir: Path, runtime: RuntimeConfig, tasks: Sequence[str] = EXTRACTION_TASKS
) -> LoadedExtractors:
    registry = default_registry()
    extractors: dict[str, Any] = {}
    versions: dict[str, str] = {}
    missing: list[str] = []
    for task in tasks:
        model_dir = models_dir / task
        if not (model_dir / "model_card.json").is_file():
            missing.append(task)
            log.warning("extractor missing; run `oncovigil models build`", extra={"task": task})
            continue
        card = read_card(model_dir)
        extractors[task] = registry.create(card.name, model_dir, runtime)
        # Builds of one registry name from different artifacts (the MPNet and MiniLM ADE taggers) must differ:
        # a note the sync pulls is read again under a new version, and every finding names the model that made it.
        fingerprint = card.export.get("artifact_fingerprint")
        versions[task] = f"{card.name}@{card.version}" + (f"+{str(fingerprint)[:8]}" if fingerprint else "")
        if task in RETRIEVAL_DIRS and (models_dir / RETRIEVAL_DIRS[task] / "retrieval.json").is_file():
            extractors[task], versions[task] = _with_retrieval(task, extractors[task], versions[task], models_dir, card)
        log.info("extractor loaded", extra={"task": task, "model": versions[task]})
    return LoadedExtractors(extractors, versions, missing)
