"""``refine`` of the toxicity task on a tiny BERT student and generated radiotherapy notes: the held-out split, the
strategy ladder (retrieval, then LoRA), the keep-only-if-better rule, the files and the per-label report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_drugcomb_tinybert import build_tiny_bert

from cds.cohort import generate_cohort
from cds.errors import RefineError
from cds.refine import STRATEGIES, RefineOptions, run_ladder, split
from cds.refine_toxicity import TOXICITY_TASK, load_retrieval
from models.card import ModelCard, write_card
from models.registry import RuntimeConfig
from models.runtime import CPU
from models.toxicity import REGISTRY_NAME, ToxicityExtractor, ToxicityNote, load_toxicity_extractor, notes_from_records
from models.toxicity.build import build_toxicity_dir
from models.toxicity.train import ToxicityTrainConfig, train_toxicity

REPO = Path(__file__).resolve().parents[2]
SYMPTOMS = ("fatigue", "diarrhea", "urinary frequency")


@pytest.fixture(scope="module")
def labelled() -> list[ToxicityNote]:
    return notes_from_records((n.to_json() for n in generate_cohort(40, 6102).notes), SYMPTOMS)


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory, labelled: list[ToxicityNote]) -> ToxicityExtractor:
    root = tmp_path_factory.mktemp("refine-student")
    base = build_tiny_bert(root / "base")
    config = ToxicityTrainConfig(
        symptoms=SYMPTOMS, max_length=48, top_layers=1, mlp_hidden=16, lora_r=4, batch_size=4, max_steps=2, threads=1
    )
    train_toxicity(labelled[:2], base, root / "artifact", config)
    card = ModelCard(name=REGISTRY_NAME, task="toxicity", version="0", base_model="t", base_model_source="t")
    write_card(root / "artifact", card)
    build_toxicity_dir(root / "artifact", root / "model", int8=False, base_dir=base)
    return load_toxicity_extractor(root / "model", RuntimeConfig(providers=(CPU,), threads=1))


def test_split_is_deterministic_and_disjoint(labelled: list[ToxicityNote]) -> None:
    pool, held = split(labelled, 0.3, "heldout", lambda n: n.note_id)
    assert {n.note_id for n in pool}.isdisjoint({n.note_id for n in held})
    assert len(pool) + len(held) == len(labelled) and held
    assert [n.note_id for n in split(labelled, 0.3, "heldout", lambda n: n.note_id)[1]] == [n.note_id for n in held]


def test_refine_reports_every_label_and_keeps_only_an_improvement(
    student: ToxicityExtractor, labelled: list[ToxicityNote], tmp_path: Path
) -> None:
    calls: list[int] = []

    def no_better_fine_tune(pool: Sequence[ToxicityNote], folder: Path) -> ToxicityExtractor:
        calls.append(len(pool))
        return student  # a "fine-tune" that learned nothing must never be kept

    report = run_ladder(TOXICITY_TASK, student, labelled, tmp_path, RefineOptions(target=1.01), no_better_fine_tune)
    assert set(report["per_label"]) == set(SYMPTOMS)
    assert report["under_target_before"] == list(SYMPTOMS)  # nothing reaches an impossible target
    assert calls == [report["pool_items"]]
    assert set(report["macro_f1"]) == set(STRATEGIES)
    assert report["macro_f1"]["lora"] == report["macro_f1"]["current"]
    kept = report["kept"]
    assert kept != "lora"
    assert kept == "current" or report["macro_f1"][kept] > report["macro_f1"]["current"]
    assert (tmp_path / "report.md").read_text().startswith(f"# Refinement of toxicity: kept `{kept}`")
    assert json.loads((tmp_path / "report.json").read_text())["kept"] == kept
    if kept == "retrieval":
        again = load_retrieval(student, tmp_path)
        assert again.weight == report["details"]["retrieval"]["weight"] and len(again.index) > 0


def test_too_few_labels_is_an_error(student: ToxicityExtractor, labelled: list[ToxicityNote], tmp_path: Path) -> None:
    with pytest.raises(RefineError, match="OV-0131"):
        run_ladder(TOXICITY_TASK, student, labelled[:6], tmp_path, RefineOptions(), None)


def test_cli_refuses_other_tasks(tmp_path: Path) -> None:
    env: dict[str, Any] = {**os.environ, "ONCOVIGIL_HOME": str(tmp_path)}
    labels = tmp_path / "labels.jsonl"
    labels.write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", "refine", "recommender", "--labels", str(labels)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "OV-0130" in done.stderr


def test_the_sync_loads_an_installed_index_only_for_the_model_it_was_built_on(
    student: ToxicityExtractor, labelled: list[ToxicityNote], tmp_path: Path
) -> None:
    import shutil

    from cds.extraction import RETRIEVAL_DIRS, load_extractors
    from models import read_card
    from models.toxicity.retrieval import INDEX_FILE, RetrievalToxicityExtractor, build_index

    model_dir = student.classifier.session.path.parent
    models = tmp_path / "models"
    shutil.copytree(model_dir, models / "toxicity")
    index, _ = build_index(student, labelled[:10])
    installed = models / RETRIEVAL_DIRS["toxicity"]
    index.save(installed / INDEX_FILE)
    fingerprint = read_card(model_dir).files["model.onnx"]
    settings = {"weight": 0.5, "k": 4, "tau": 0.05, "windows": len(index), "model_onnx_sha256": fingerprint}
    (installed / "retrieval.json").write_text(json.dumps(settings))
    runtime = RuntimeConfig(providers=(CPU,), threads=1)
    loaded = load_extractors(models, runtime, tasks=("toxicity",))
    assert isinstance(loaded.extractors["toxicity"], RetrievalToxicityExtractor)
    assert loaded.versions["toxicity"].endswith(f"+knn{len(index)}w0.5")
    assert len(loaded.run([labelled[0].text])[0].toxicity) == len(SYMPTOMS)
    (installed / "retrieval.json").write_text(json.dumps({**settings, "model_onnx_sha256": "another model"}))
    plain = load_extractors(models, runtime, tasks=("toxicity",))
    assert not isinstance(plain.extractors["toxicity"], RetrievalToxicityExtractor)
