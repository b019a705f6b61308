"""Wires the recommender and the overprescription rules into the CDS decisions and the sync."""

from __future__ import annotations

from cds.decisions import OrderAssessor
from cds.settings import Settings
from cds.state import StateStore
from cds.sync import OrdersHook


def build_assessor(settings: Settings) -> OrderAssessor | None:
    """The order assessor for the CDS service (None until the recommender is built)."""
    return None


def build_assessor_hook(settings: Settings, store: StateStore) -> OrdersHook | None:
    """What the sync does with changed orders (DetectedIssue warnings)."""
    return None
