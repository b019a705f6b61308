"""The recommender evaluation: contract keys from the real CLI, the metrics through the decision, Synthea visits."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from cds.formulary import default_formulary
from cds.recommender_eval import contract_report, prior_events_from_history, visit_orders
from cds.settings import load_settings
from models.recommender import PatientSummary
from models.recommender.baselines import fit_baselines
from models.recommender.visits import TrainingVisit, write_visits

METRICS = {
    "jaccard",
    "precision",
    "recall",
    "f1",
    "mean_recommended",
    "mean_prescribed",
    "warning_precision",
    "warning_recall",
}
F = default_formulary()


def _v(
    i: int, cancer: str, history: str, prev: tuple[str, ...], pres: tuple[str, ...], over: tuple[str, ...] = ()
) -> TrainingVisit:
    cands = ("cisplatin", "pemetrexed", "ondansetron", "palonosetron", "leuprolide", "bicalutamide", "trastuzumab")
    return TrainingVisit(
        f"v{i}", PatientSummary(60, "male", (cancer,), prev, (), history), pres, cands, over, group=f"p{i}"
    )


VISITS = [
    _v(1, "non-small cell lung cancer", "regimen cisplatin/pemetrexed", (), ("cisplatin", "pemetrexed", "ondansetron")),
    _v(
        2,
        "non-small cell lung cancer",
        "regimen cisplatin/pemetrexed",
        ("cisplatin", "pemetrexed", "ondansetron"),
        ("cisplatin", "pemetrexed", "palonosetron"),
        over=("palonosetron",),
    ),
    _v(3, "prostate cancer", "regimen leuprolide/bicalutamide", (), ("leuprolide", "bicalutamide")),
    _v(
        4,
        "prostate cancer",
        "regimen leuprolide/bicalutamide; grade 3 rash on bicalutamide (2025-05-01)",
        ("leuprolide", "bicalutamide"),
        ("leuprolide", "bicalutamide"),
        over=("bicalutamide",),
    ),
    _v(
        5,
        "prostate cancer",
        "regimen leuprolide/bicalutamide",
        ("leuprolide",),
        ("leuprolide", "trastuzumab"),
        over=("trastuzumab",),
    ),
]


def test_history_phrases_become_prior_events() -> None:
    events = prior_events_from_history(
        "Stage IV colon cancer; grade 3 proteinuria on bevacizumab (2025-08-21); grade 2 nausea on "
        "oxaliplatin (2025-08-01); grade 4 neutrophil count decreased on docetaxel (2025-09-02)"
    )
    assert [(e.drug, e.grade, e.event, e.date) for e in events] == [
        ("bevacizumab", 3, "proteinuria", "2025-08-21"),
        ("oxaliplatin", 2, "nausea", "2025-08-01"),
        ("docetaxel", 4, "neutrophil count decreased", "2025-09-02"),
    ]


def test_previous_medications_are_active_orders() -> None:
    orders = visit_orders(VISITS[1])
    assert [(o.drug, o.status) for o in orders] == [
        ("cisplatin", "active"),
        ("pemetrexed", "active"),
        ("ondansetron", "active"),
        ("cisplatin", "draft"),
        ("pemetrexed", "draft"),
        ("palonosetron", "draft"),
    ]


def test_report_scores_every_method_through_the_decision() -> None:
    perfect = [{d: (1.0 if d in v.appropriate else 0.0) for d in v.universe} for v in VISITS]
    report = contract_report(VISITS, perfect, 0.5, fit_baselines(VISITS), F)
    assert set(report) == {"model", "baselines"}
    assert set(report["baselines"]) == {"all", "top_k", "cooccurrence"}
    for metrics in [report["model"], *report["baselines"].values()]:
        assert set(metrics) == METRICS
    model = report["model"]
    assert model["f1"] == model["jaccard"] == 1.0
    assert model["warning_precision"] == model["warning_recall"] == 1.0
    everything = report["baselines"]["all"]
    assert everything["recall"] == 1.0 and everything["mean_recommended"] == 7.0
    # "all" scores every drug 1: only the hard rules warn (the duplicate and the grade-3 rash), not trastuzumab.
    assert everything["warning_recall"] == pytest.approx(2 / 3, abs=1e-4) and everything["warning_precision"] == 1.0
    assert report["baselines"]["top_k"]["mean_recommended"] == 2.0


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONCOVIGIL_HOME": str(home), "ONCOVIGIL_ONNX_PROVIDERS": '["CPUExecutionProvider"]'}
    return subprocess.run(
        [str(Path(sys.executable).parent / "oncovigil"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def _tiny_artifact(root: Path) -> Path:
    """A tiny random Llama with a LoRA trained for a few steps, saved as the committed artifact would be."""
    spec = importlib.util.spec_from_file_location(
        "recommender_tiny", Path(__file__).resolve().parents[1] / "models" / "recommender_tiny.py"
    )
    assert spec is not None and spec.loader is not None
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    from models.card import ModelCard, write_card
    from models.recommender.artifact import RecommenderSettings, write_settings
    from models.recommender.base import load_base
    from models.recommender.baselines import write_baselines
    from models.recommender.training import RecommenderTrainConfig, save_adapter, train_recommender

    base_dir = tiny.build_tiny_base(root / "base")
    config = RecommenderTrainConfig(base=str(base_dir), max_steps=3, warmup_steps=1)
    outcome = train_recommender(load_base(base_dir), VISITS, VISITS[:2], config)
    artifact = root / "artifact"
    save_adapter(outcome.model, artifact, str(base_dir))
    write_settings(artifact, RecommenderSettings(threshold=outcome.threshold, base=str(base_dir)))
    write_baselines(artifact, fit_baselines(VISITS))
    card = ModelCard(
        name="recommender.v1", task="recommender", version="test", base_model="tiny", base_model_source="test"
    )
    write_card(artifact, card)
    return artifact


def test_export_and_eval_cli_print_the_contract_keys(tmp_path: Path) -> None:
    artifact = _tiny_artifact(tmp_path)
    home, model_dir = tmp_path / "home", tmp_path / "model"
    built = _cli(["export", "recommender", "--artifact", str(artifact), "--out", str(model_dir)], home)
    assert built.returncode == 0, built.stderr
    export = json.loads(built.stdout)["export"]
    assert export["parity"]["max_abs_diff"] < 1e-3 and export["artifact_fingerprint"]
    assert (model_dir / "baselines.json").is_file() and (model_dir / "model_card.json").is_file()
    data = tmp_path / "visits.jsonl"
    # a cohort-style visit: its phenotype variant (coded "breast cancer", HER2 in the phenotype line) is scored too
    her2 = _v(6, "breast cancer, HER2-negative", "Stage II breast cancer, HER2-negative", (), ("trastuzumab",))
    visits = [*VISITS, replace(her2, overprescribed=("trastuzumab",))]
    write_visits(data, visits)
    result = _cli(["eval", "recommender", "--data", str(data), "--json", "--model", str(model_dir)], home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"model", "baselines", "phenotype_variants"}
    assert set(report["baselines"]) == {"all", "top_k", "cooccurrence"}
    assert all(set(m) == METRICS for m in [report["model"], *report["baselines"].values()])
    assert report["model"]["mean_prescribed"] == pytest.approx(sum(len(v.appropriate) for v in visits) / 6)
    variants = report["phenotype_variants"]
    assert variants["visits"] == 1 and set(variants["model"]) == METRICS
    assert variants["her2_sensitivity"]["HER2-negative"]["scores"] == 1
    # the biomarker rule reads the phenotype line whatever the tiny model scores
    assert variants["model"]["warning_recall"] == 1.0
    data.write_text('{"visit_id": "x"}\n')
    bad = _cli(["eval", "recommender", "--data", str(data), "--json", "--model", str(model_dir)], home)
    assert bad.returncode == 2 and "OV-2078" in bad.stderr and bad.stdout == ""


SYNTHEA = load_settings().data_dir / "synthea_bulk_10"


def test_synthea_visits_are_plain_encounter_records(prerequisite: Callable[[bool, str], None]) -> None:
    prerequisite(SYNTHEA.is_dir(), "the public Synthea sample is not in the data folder")
    from cds.recommender_visits import synthea_visits

    visits = synthea_visits(SYNTHEA, F)
    assert len(visits) > 100
    names = {d.name for d in F.drugs}
    assert all(set(v.prescribed) <= names for v in visits)
    assert {"paclitaxel", "cisplatin", "epoetin alfa", "lisinopril"} <= {d for v in visits for d in v.prescribed}
    for v in visits:
        assert not any("(disorder)" in c or "employment" in c for c in v.patient.conditions)
        assert "prescribed" not in v.patient.history and "mg" not in v.patient.history.split()
    by_patient: dict[str, list[TrainingVisit]] = {}
    for v in visits:
        by_patient.setdefault(v.group, []).append(v)
    assert len(by_patient) >= 10
    assert all(not vs[0].patient.previous_medications for vs in by_patient.values())


def test_warning_threshold_is_calibrated_through_the_decision() -> None:
    from cds.recommender_eval import calibrate_warning_threshold

    # Appropriate drugs mostly score high, one scores 0.08 (a doubtful but right order); the no-indication
    # overprescription (trastuzumab for prostate cancer) scores 0.01.
    scores = [{d: (0.9 if d in v.appropriate else 0.2) for d in v.universe} for v in VISITS]
    scores[0]["ondansetron"] = 0.08
    scores[4]["trastuzumab"] = 0.01
    warn_at, metrics = calibrate_warning_threshold(VISITS, scores, 0.5, F)
    assert 0.01 < warn_at <= 0.08
    assert metrics.warning_precision == 1.0 and metrics.warning_recall == 1.0
    same = contract_report(VISITS, scores, 0.5, fit_baselines(VISITS), F)["model"]
    assert same["warning_precision"] < 1.0  # warning below the recommendation threshold itself also flags ondansetron
