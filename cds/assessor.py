"""Wires the recommender and the overprescription rules into the CDS decisions and the sync."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cds.decisions import OrderAssessor
from cds.formulary import default_formulary
from cds.phenotype_map import summary_phrases
from cds.recommender_assessor import RecommenderAssessor
from cds.settings import Settings
from cds.state import StateStore
from cds.sync import OrdersHook
from models import RuntimeConfig, default_registry, read_card

log = logging.getLogger(__name__)


def stored_phenotype(store: StateStore) -> Callable[[str], list[str]]:
    """Patient id -> phenotype phrases ("HER2-positive", "stage IIIA") from the sync's findings, newest note first."""

    def lookup(patient_id: str) -> list[str]:
        rows = sorted(store.findings(kind="phenotype", patient_id=patient_id), key=lambda r: r.created_at, reverse=True)
        return summary_phrases([r.payload for r in rows])

    return lookup


def build_assessor(settings: Settings, store: StateStore | None = None) -> OrderAssessor:
    """The recommender when its model directory is built, and the overprescription rules in every case.

    With ``store`` the patient summary also carries the tumour phenotype the sync extracted.
    """
    model_dir = settings.resolved_models_dir / "recommender"
    recommender = None
    if (model_dir / "model_card.json").is_file():
        card = read_card(model_dir)
        runtime = RuntimeConfig(providers=tuple(settings.onnx_providers), threads=settings.onnx_threads)
        recommender = default_registry().create(card.name, model_dir, runtime)
        log.info("recommender loaded", extra={"model": f"{card.name}@{card.version}"})
    else:
        log.warning("recommender not built; overprescription warnings come from the rules alone")
    phenotypes = stored_phenotype(store) if store is not None else None
    return RecommenderAssessor(recommender, default_formulary(), phenotypes)


def build_assessor_hook(settings: Settings, store: StateStore) -> OrdersHook | None:
    """What the sync does with changed orders: DetectedIssue write-back is not wired yet (see README status)."""
    return None
