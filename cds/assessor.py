"""Wires the recommender and the overprescription rules into the CDS decisions and the sync."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cds.decisions import OrderAssessor
from cds.formulary import default_formulary
from cds.issue_sync import DetectedIssueSync, IssueAuthor
from cds.phenotype_map import note_order, summary_phrases
from cds.recommender_assessor import RecommenderAssessor
from cds.settings import Settings
from cds.state import StateStore
from cds.sync import OrdersHook
from models import RuntimeConfig, default_registry, read_card
from models.recommender import MedicationRecommender

log = logging.getLogger(__name__)

# names the overprescription policy of cds.overprescription; bump when its rules change what they warn about
RULES = "overprescription-rules"
RULES_VERSION = "1"


def _load_recommender(settings: Settings) -> tuple[MedicationRecommender | None, IssueAuthor]:
    """The recommender when its model directory is built, and who the warnings are from (rules [+ model])."""
    model_dir = settings.resolved_models_dir / "recommender"
    if not (model_dir / "model_card.json").is_file():
        log.warning("recommender not built; overprescription warnings come from the rules alone")
        return None, IssueAuthor(RULES, RULES_VERSION)
    card = read_card(model_dir)
    runtime = RuntimeConfig(providers=tuple(settings.onnx_providers), threads=settings.onnx_threads)
    recommender: MedicationRecommender = default_registry().create(card.name, model_dir, runtime)
    log.info("recommender loaded", extra={"model": f"{card.name}@{card.version}"})
    return recommender, IssueAuthor(f"{RULES}+{card.name}", f"{RULES_VERSION}+{card.version}")


def stored_phenotype(store: StateStore) -> Callable[[str], list[str]]:
    """Patient id -> phenotype phrases ("HER2-positive", "stage IIIA") from the sync's findings, newest note first."""

    def lookup(patient_id: str) -> list[str]:
        rows = sorted(store.findings(kind="phenotype", patient_id=patient_id), key=note_order, reverse=True)
        return summary_phrases([r.payload for r in rows])

    return lookup


def build_assessor(settings: Settings, store: StateStore | None = None) -> OrderAssessor:
    """The recommender when its model directory is built, and the overprescription rules in every case.

    With ``store`` the patient summary also carries the tumour phenotype the sync extracted.
    """
    recommender, _ = _load_recommender(settings)
    phenotypes = stored_phenotype(store) if store is not None else None
    return RecommenderAssessor(recommender, default_formulary(), phenotypes)


def build_assessor_hook(settings: Settings, store: StateStore) -> OrdersHook | None:
    """What the sync does with changed orders: re-assess those patients and write or withdraw DetectedIssues.

    Prior adverse events come from the FHIR server (ours, written earlier in the same run, and other
    systems'); ``store`` gives the tumour phenotype the notes stage extracted, so a nightly warning and a card
    at prescribing time score the same patient summary.
    """
    recommender, author = _load_recommender(settings)
    formulary = default_formulary()
    assessor = RecommenderAssessor(recommender, formulary, stored_phenotype(store))
    return DetectedIssueSync(assessor, formulary, author, settings.fhir_write_batch_size)
