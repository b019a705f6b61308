"""``oncovigil refine drugcomb`` on a weak tiny-BERT student and templated DrugComb sentences: per-class F1
before and after, retrieval kept only when the held-out score improves, and a kept index that the sync loads
for the model it was built on (and refuses for another)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_drugcomb_tinybert import build_tiny_drugcomb

from cds.errors import RefineError
from cds.extraction import RETRIEVAL_DIRS, load_extractors
from cds.refine import RefineOptions, run_ladder
from cds.refine_drugcomb import DRUGCOMB_TASK, RELATION_LABELS, load_drugcomb_retrieval
from models import read_card
from models.drugcomb import DrugCombExtractor, load_drugcomb_extractor, parse_doc
from models.drugcomb.data import DrugCombDoc
from models.drugcomb.retrieval import RetrievalDrugCombExtractor
from models.registry import RuntimeConfig
from models.runtime import CPU

REPO = Path(__file__).resolve().parents[2]
DRUGS = ("cisplatin", "paclitaxel", "carboplatin", "gemcitabine")
TEMPLATES = (
    ("{a} plus {b} gave a response .", "POS"),
    ("{a} and {b} were given weekly .", "COMB"),
    ("{a} with {b} gave progression .", "NEG"),
    ("{a} then {b} alone at the visit .", None),
)


def raw_docs() -> list[dict[str, Any]]:
    docs = []
    for n, ((a, b), (template, label)) in enumerate(itertools.product(itertools.permutations(DRUGS, 2), TEMPLATES)):
        sentence = template.format(a=a, b=b)
        spans = [
            {"span_id": i, "text": d, "start": sentence.index(d), "end": sentence.index(d) + len(d)}
            for i, d in enumerate((a, b))
        ]
        rels = [{"class": label, "spans": [0, 1]}] if label else []
        docs.append({"doc_id": f"s{n}", "sentence": sentence, "spans": spans, "rels": rels, "paragraph": sentence})
    return docs


@pytest.fixture(scope="module")
def labelled() -> list[DrugCombDoc]:
    return [parse_doc(d) for d in raw_docs()]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, labelled: list[DrugCombDoc]) -> Path:
    return build_tiny_drugcomb(tmp_path_factory.mktemp("refine-drugcomb"), labelled)


def _open(folder: Path) -> DrugCombExtractor:
    return load_drugcomb_extractor(folder, RuntimeConfig(providers=(CPU,), threads=1))


def test_refine_reports_every_class_and_keeps_retrieval_only_if_better(
    model_dir: Path, labelled: list[DrugCombDoc], tmp_path: Path
) -> None:
    student = _open(model_dir)
    calls: list[int] = []

    def no_better_fine_tune(pool: Sequence[DrugCombDoc], folder: Path) -> DrugCombExtractor:
        calls.append(len(pool))
        return student  # learned nothing: never kept

    fingerprint = read_card(model_dir).files["model.onnx"]
    # k=1: the tiny random encoder's features tell templates apart only at the very nearest neighbour
    options = RefineOptions(target=1.01, k=1)
    report = run_ladder(DRUGCOMB_TASK, student, labelled, tmp_path, options, no_better_fine_tune, fingerprint)
    assert set(report["per_label"]) == set(RELATION_LABELS) and report["metric"] == "f1"
    assert set(report["per_label"]["POS"]) == {"f1", "precision", "recall", "fixed_by"}
    assert report["under_target_before"] == list(RELATION_LABELS)
    assert calls == [report["pool_items"]] and report["pool_items"] + report["heldout_items"] == len(labelled)
    assert set(report["f1_pos_exact"]) == {"current", "retrieval", "lora", "lora+retrieval"}
    # templated sentences: their labelled neighbours decide, and the held-out macro F1 rises
    assert report["macro_f1"]["retrieval"] > report["macro_f1"]["current"]
    assert report["kept"] == "retrieval"
    assert (tmp_path / "report.md").read_text().startswith("# Refinement of drugcomb: kept `retrieval`")
    again = load_drugcomb_retrieval(student, tmp_path, fingerprint)
    assert again.weight == report["details"]["retrieval"]["weight"] > 0
    assert len(again.index) == report["details"]["retrieval"]["index_candidates"]
    with pytest.raises(RefineError, match="OV-0132"):
        load_drugcomb_retrieval(student, tmp_path, "another model")


def test_cli_installs_the_index_where_the_sync_loads_it(model_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(d) + "\n" for d in raw_docs()), encoding="utf-8")
    models = tmp_path / "models"
    shutil.copytree(model_dir, models / "drugcomb")
    env = {**os.environ, "ONCOVIGIL_HOME": str(tmp_path / "home"), "ONCOVIGIL_MODELS_DIR": str(models)}
    args = ["refine", "drugcomb", "--labels", str(labels), "--model", str(models / "drugcomb"), "--k", "1"]
    done = subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", *args, "--no-finetune", "--install", "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kept"] == "retrieval" and "lora" not in report["macro_f1"]
    assert (models / RETRIEVAL_DIRS["drugcomb"] / "retrieval_index.npz").is_file()
    loaded = load_extractors(models, RuntimeConfig(providers=(CPU,), threads=1), tasks=("drugcomb",))
    extractor = loaded.extractors["drugcomb"]
    assert isinstance(extractor, RetrievalDrugCombExtractor)
    assert loaded.versions["drugcomb"].endswith(f"+knn{len(extractor.index)}w{extractor.weight}")
    assert loaded.run(["cisplatin plus paclitaxel gave a response ."])[0].combinations


def test_cli_rejects_a_labels_file_that_is_not_drugcomb(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text("not json\n", encoding="utf-8")
    env = {**os.environ, "ONCOVIGIL_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", "refine", "drugcomb", "--labels", str(labels),
         "--no-finetune"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "OV-2071" in done.stderr and "Traceback" not in done.stderr
