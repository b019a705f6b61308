"""LAMO-style medication recommender: one yes/no question per candidate drug, scored as P(yes).

Run time (numpy + onnxruntime + tokenizers only): :func:`load_recommender` reads a model directory built
by ``oncovigil models build`` and returns a :class:`MedicationRecommender`. Training and export
(``training``, ``export``) import torch, transformers and peft inside their functions.
"""

from __future__ import annotations

from pathlib import Path

from models.card import verify_dir
from models.model_files import open_tokenizer
from models.recommender.artifact import REGISTRY_NAME, SETTINGS_FILE, RecommenderSettings, read_settings
from models.recommender.metrics import ScoredVisit, SetMetrics, VisitOutcome, calibrate_threshold, set_metrics
from models.recommender.prompt import PatientSummary, PromptFormat, render_prefix, render_suffix
from models.recommender.scorer import MedicationRecommender, OnnxYesNoScorer
from models.recommender.tokens import answer_ids
from models.registry import Registry, RuntimeConfig
from models.runtime import load_model_dir_session


def load_recommender(model_dir: Path, config: RuntimeConfig | None = None) -> MedicationRecommender:
    """Verify the directory's hashes, open its ONNX session and tokenizer, and return the recommender."""
    config = config or RuntimeConfig()
    verify_dir(model_dir)
    settings = read_settings(model_dir)
    loaded = load_model_dir_session(
        model_dir, config.providers, config.threads, allow_int8=config.allow_int8, require=config.require,
        spin=config.spin,
    )
    tokenizer = open_tokenizer(model_dir / "tokenizer.json", "OV-2193")
    yes_id, no_id = answer_ids(tokenizer, settings.prompt)
    scorer = OnnxYesNoScorer(loaded, yes_id, no_id, pad_id=no_id, max_batch=config.max_batch)
    return MedicationRecommender(
        scorer, tokenizer, settings.prompt, settings.threshold, settings.registry_name, settings.warning_threshold
    )


def register(registry: Registry) -> None:
    registry.register(REGISTRY_NAME, load_recommender)


__all__ = [
    "REGISTRY_NAME",
    "SETTINGS_FILE",
    "MedicationRecommender",
    "OnnxYesNoScorer",
    "PatientSummary",
    "PromptFormat",
    "RecommenderSettings",
    "ScoredVisit",
    "SetMetrics",
    "VisitOutcome",
    "calibrate_threshold",
    "load_recommender",
    "read_settings",
    "register",
    "render_prefix",
    "render_suffix",
    "set_metrics",
]
