"""Wires the recommender and the overprescription rules into the CDS decisions and the sync."""

from __future__ import annotations

import logging

from cds.decisions import OrderAssessor
from cds.formulary import default_formulary
from cds.recommender_assessor import RecommenderAssessor
from cds.settings import Settings
from cds.state import StateStore
from cds.sync import OrdersHook
from models import RuntimeConfig, default_registry, read_card

log = logging.getLogger(__name__)


def build_assessor(settings: Settings) -> OrderAssessor:
    """The recommender when its model directory is built, and the overprescription rules in every case."""
    model_dir = settings.resolved_models_dir / "recommender"
    recommender = None
    if (model_dir / "model_card.json").is_file():
        card = read_card(model_dir)
        runtime = RuntimeConfig(providers=tuple(settings.onnx_providers), threads=settings.onnx_threads)
        recommender = default_registry().create(card.name, model_dir, runtime)
        log.info("recommender loaded", extra={"model": f"{card.name}@{card.version}"})
    else:
        log.warning("recommender not built; overprescription warnings come from the rules alone")
    return RecommenderAssessor(recommender, default_formulary())


def build_assessor_hook(settings: Settings, store: StateStore) -> OrdersHook | None:
    """What the sync does with changed orders: DetectedIssue write-back is not wired yet (see README status)."""
    return None
