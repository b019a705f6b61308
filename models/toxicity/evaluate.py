"""Score a toxicity extractor on labelled notes (the contract keys of ``oncovigil eval toxicity``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.toxicity.data import ToxicityNote
from models.toxicity.extractor import ToxicityExtractor
from models.toxicity.head import as_truth_map
from models.toxicity.metrics import toxicity_metrics


def score_notes(extractor: ToxicityExtractor, notes: Sequence[ToxicityNote], batch_size: int = 16) -> dict[str, Any]:
    """Per-symptom accuracy / macro F1, overall macro F1 and accuracy, and grade accuracy."""
    symptoms = extractor.symptoms
    missing = [s for s in symptoms if notes and s not in notes[0].truth]
    if missing:
        from models.errors import DataFormatError

        raise DataFormatError("OV-2073", f"the notes carry no truth for the model's symptoms {missing}")
    predictions = list(extractor.pipe((n.text for n in notes), batch_size=batch_size))
    gold = [{s: (n.truth[s].status, n.truth[s].grade) for s in symptoms} for n in notes]
    return toxicity_metrics(gold, [as_truth_map(p) for p in predictions], symptoms)
