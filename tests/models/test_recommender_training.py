"""LAMO sampling, threshold calibration, and train -> adapter -> merge -> ONNX -> runtime on a tiny Llama."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recommender_tiny import build_tiny_base

from models.card import ModelCard, verify_dir, write_card
from models.errors import DataFormatError, ModelIntegrityError
from models.recommender import PatientSummary, load_recommender
from models.recommender.metrics import ScoredVisit, VisitOutcome, calibrate_threshold, set_metrics
from models.recommender.training import sample_examples
from models.recommender.visits import TrainingVisit, read_visits, write_visits
from models.registry import RuntimeConfig
from models.runtime import CPU


def _visit(
    i: int, prescribed: tuple[str, ...], over: tuple[str, ...] = (), cancer: str = "lung cancer"
) -> TrainingVisit:
    patient = PatientSummary(
        age=50 + i, sex="female" if i % 2 else "male", conditions=(cancer,), history=f"cycle {i % 4 + 1}"
    )
    candidates = ("cisplatin", "pemetrexed", "ondansetron", "granisetron", "tamsulosin", "leuprolide")
    return TrainingVisit(f"v{i}", patient, prescribed, candidates, over, group=f"p{i // 2}")


VISITS = [
    _visit(0, ("cisplatin", "pemetrexed", "ondansetron")),
    _visit(1, ("cisplatin", "pemetrexed")),
    _visit(2, ("cisplatin", "pemetrexed", "ondansetron", "granisetron"), over=("granisetron",)),
    _visit(3, ("leuprolide",), cancer="prostate cancer"),
    _visit(4, ("leuprolide", "tamsulosin"), cancer="prostate cancer"),
    _visit(5, ("cisplatin", "ondansetron")),
]


def test_lamo_sampling_balances_negatives_per_drug() -> None:
    groups = sample_examples(VISITS, ratio=1.0, min_negatives=1, rng=random.Random(0))
    labels: dict[str, list[int]] = {}
    for group in groups:
        for drug, label in group:
            labels.setdefault(drug, []).append(label)
    # cisplatin: 4 positives, but only 2 visits where it was a candidate and not prescribed.
    assert labels["cisplatin"].count(1) == 4 and labels["cisplatin"].count(0) == 2
    # ondansetron: 3 positives -> 3 negatives drawn from the 3 visits without it.
    assert labels["ondansetron"].count(1) == 3 and labels["ondansetron"].count(0) == 3
    # granisetron was prescribed once but as a deliberate overprescription: never a positive.
    assert labels["granisetron"].count(1) == 0
    assert ("granisetron", 0) in groups[2]
    # every drug gets at least min_negatives negatives when the pool allows.
    assert all(v.count(0) >= 1 for v in labels.values())


def test_metrics_and_calibration_on_hand_made_scores() -> None:
    outcome = VisitOutcome(frozenset({"a", "b", "c"}), frozenset({"a", "d"}), frozenset({"x"}), frozenset({"x", "y"}))
    m = set_metrics([outcome])
    assert (m.jaccard, m.precision, m.recall) == (0.25, 1 / 3, 0.5)
    assert m.f1 == pytest.approx(0.4)
    assert (m.mean_recommended, m.mean_prescribed, m.warning_precision, m.warning_recall) == (3, 2, 1.0, 0.5)
    visits = [
        ScoredVisit({"a": 0.9, "b": 0.7, "c": 0.2, "x": 0.1}, frozenset({"a", "b"}), frozenset({"x"})),
        ScoredVisit({"a": 0.8, "b": 0.35, "c": 0.3}, frozenset({"a"})),
    ]
    threshold, best = calibrate_threshold(visits)
    assert 0.35 < threshold <= 0.7
    assert best.f1 == 1.0 and best.warning_recall == 1.0 and best.warning_precision == 1.0


def test_visits_jsonl_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "visits.jsonl"
    write_visits(path, VISITS)
    assert read_visits(path) == VISITS
    path.write_text('{"visit_id": "x", "patient": {"age": "old", "sex": "f"}}\n')
    with pytest.raises(DataFormatError, match="OV-2076"):
        read_visits(path)
    path.write_text('{"visit_id": "x", "patient": {"age": 3, "sex": "f"}, "prescribed": "cisplatin"}\n')
    with pytest.raises(DataFormatError, match="OV-2078"):
        read_visits(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from models.recommender.artifact import RecommenderSettings, write_settings
    from models.recommender.base import load_base
    from models.recommender.export import build_recommender_dir
    from models.recommender.training import RecommenderTrainConfig, save_adapter, train_recommender

    root = tmp_path_factory.mktemp("recommender-train")
    base_dir = build_tiny_base(root / "base")
    config = RecommenderTrainConfig(base=str(base_dir), max_steps=6, warmup_steps=2, max_candidates=4, seed=3)
    outcome = train_recommender(load_base(base_dir), VISITS[:4], VISITS[4:], config)
    artifact = root / "artifact"
    save_adapter(outcome.model, artifact, str(base_dir))
    write_settings(artifact, RecommenderSettings(threshold=outcome.threshold, base=str(base_dir)))
    write_card(
        artifact,
        ModelCard(
            name="recommender.v1", task="recommender", version="test", base_model="tiny", base_model_source="test"
        ),
    )
    report, settings = build_recommender_dir(artifact, root / "model", int8=True)
    card = write_card(
        root / "model",
        ModelCard(
            name="recommender.v1",
            task="recommender",
            version="test",
            base_model="tiny",
            base_model_source="test",
            export=report.as_record(),
        ),
    )
    return {
        "root": root,
        "outcome": outcome,
        "report": report,
        "settings": settings,
        "card": card,
        "artifact": artifact,
        "base": base_dir,
    }


def test_training_runs_the_requested_steps_and_calibrates(built: dict[str, Any]) -> None:
    outcome = built["outcome"]
    assert outcome.steps == 6 and np.isfinite(outcome.final_loss)
    assert 0.0 < outcome.threshold < 1.0
    assert len(outcome.dev_scores) == 2
    assert set(outcome.dev_scores[0].scores) == set(VISITS[4].universe)


def test_artifact_is_the_adapter_only(built: dict[str, Any]) -> None:
    names = {p.name for p in built["artifact"].iterdir()}
    assert names == {"adapter_config.json", "adapter_model.safetensors", "recommender.json", "model_card.json"}
    adapter = json.loads((built["artifact"] / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}


def test_export_parity_and_int8_gate(built: dict[str, Any]) -> None:
    report = built["report"]
    assert report.parity_max_abs_diff < 1e-3 and report.parity_cached_vs_full < 1e-4
    assert report.parity_prompts == 18
    assert (built["root"] / "model" / "model_int8.onnx").is_file() is report.int8
    assert report.int8 is (report.int8_max_drift is not None and report.int8_max_drift <= 0.02)


def test_runtime_scores_match_the_merged_torch_model(built: dict[str, Any]) -> None:
    import torch

    from models.recommender.base import load_base
    from models.recommender.export import merged_model
    from models.recommender.tokens import answer_ids, encode_prompt
    from models.recommender.torch_scoring import margins_full

    recommender = load_recommender(built["root"] / "model", RuntimeConfig(providers=(CPU,), allow_int8=False))
    assert recommender.provider == CPU and recommender.threshold == built["outcome"].threshold
    patient, candidates = VISITS[0].patient, list(VISITS[0].candidates)
    scores = recommender.score(patient, candidates)
    assert [s.drug for s in scores] == candidates
    assert recommender.recommend(patient, candidates) == [s.drug for s in scores if s.p_yes >= recommender.threshold]
    base = load_base(built["base"])
    model = merged_model(built["artifact"], base)
    fmt = built["settings"].prompt
    yes_id, no_id = answer_ids(base.backend, fmt)
    prefix, suffixes = encode_prompt(base.backend, fmt, patient, candidates)
    with torch.no_grad():
        expected = torch.sigmoid(margins_full(model, prefix, suffixes, yes_id, no_id).double()).numpy()
    assert np.abs(np.array([s.p_yes for s in scores]) - expected).max() < 1e-4
    uncached = recommender.score(patient, candidates, cached=False)
    assert max(abs(a.p_yes - b.p_yes) for a, b in zip(scores, uncached, strict=True)) < 1e-5


def test_tampered_model_directory_is_refused(built: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(built["root"] / "model", copy)
    settings = json.loads((copy / "recommender.json").read_text())
    settings["threshold"] = 0.0
    (copy / "recommender.json").write_text(json.dumps(settings))
    with pytest.raises(ModelIntegrityError, match="OV-2022"):
        load_recommender(copy)
    assert verify_dir(built["root"] / "model").name == "recommender.v1"
