"""``oncovigil refine ade|phenotype`` with the committed taggers: ADE on labelled ADE-Corpus-V2 sentences of
our dev split (drug, event and pair F1), phenotype on generated notes of an unseen seed (F1 per stated field),
and token indexes that the sync loads for the model they were built on and refuses for another."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cds.extraction import RETRIEVAL_DIRS, load_extractors
from cds.model_tasks import get_task, is_built, make_context
from cds.settings import load_settings
from models import read_card
from models.ade import AdeExtractor, read_corpus, split_by_pmid
from models.ade.corpus import AdeSentence, write_corpus
from models.ade.training import corpus_examples
from models.registry import RuntimeConfig
from models.runtime import CPU
from models.token_retrieval import INDEX_FILE, RetrievalTokenRunner, build_token_index

REPO = Path(__file__).resolve().parents[2]
CORPUS = load_settings().data_dir / "ade_corpus_v2"
RUNTIME = RuntimeConfig(providers=(CPU,), threads=1, allow_int8=False)


def built_model(task: str, tmp_path_factory: pytest.TempPathFactory, prerequisite: Any) -> Path:
    """The built default model of ``task`` (taggers: with their hidden-state output), built when stale."""
    spec = get_task(task)
    prerequisite((spec.artifact / "model_card.json").is_file(), f"models/artifacts/{task} is not committed")
    built = load_settings().resolved_models_dir / task
    if is_built(spec, built, spec.artifact):
        return built
    out = tmp_path_factory.mktemp("models") / task
    spec.export(make_context(load_settings()), spec.artifact, out)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, prerequisite: Any) -> Path:
    return built_model("ade", tmp_path_factory, prerequisite)


@pytest.fixture(scope="module")
def labelled(prerequisite: Any) -> list[AdeSentence]:
    """60 sentences of our dev split (never trained on): 40 with pairs, 20 without."""
    prerequisite(CORPUS.is_dir(), f"{CORPUS} is missing (../shared/data)")
    _, dev = split_by_pmid(read_corpus(CORPUS))
    positives = sorted((s for s in dev if s.pairs), key=lambda s: (s.pmid, s.text))[:40]
    negatives = sorted((s for s in dev if not s.pairs), key=lambda s: (s.pmid, s.text))[:20]
    return positives + negatives


def _models_with(model_dir: Path, root: Path) -> Path:
    models = root / "models"
    shutil.copytree(model_dir, models / "ade")
    return models


def test_cli_reports_drug_event_and_pair_f1(model_dir: Path, labelled: list[AdeSentence], tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    write_corpus(labels, labelled)
    models = _models_with(model_dir, tmp_path)
    env = {**os.environ, "ONCOVIGIL_HOME": str(tmp_path / "home"), "ONCOVIGIL_MODELS_DIR": str(models)}
    args = ["refine", "ade", "--labels", str(labels), "--model", str(models / "ade"), "--no-finetune", "--json"]
    done = subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", *args, "--install", "--threads", "1"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["task"] == "ade" and set(report["per_label"]) == {"DRUG", "AE", "PAIR"}
    assert report["pool_items"] + report["heldout_items"] == len(labelled)
    assert set(report["macro_f1"]) == {"current", "retrieval"}  # --no-finetune: the ladder stops at retrieval
    assert 0.0 < report["pair_f1"]["current"] <= 1.0
    installed = models / RETRIEVAL_DIRS["ade"] / INDEX_FILE
    assert installed.is_file() == (report["kept"] == "retrieval")
    # a bad labels folder is a clear error, not a traceback
    bad = subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", "refine", "ade", "--labels", str(labels / "x")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "OV-0131" in bad.stderr and "Traceback" not in bad.stderr


def test_the_sync_loads_an_installed_token_index_only_for_its_model(
    model_dir: Path, labelled: list[AdeSentence], tmp_path: Path
) -> None:
    models = _models_with(model_dir, tmp_path)
    plain = AdeExtractor.load(models / "ade", RUNTIME)
    index = build_token_index(plain.runner, plain.labels, corpus_examples(labelled[:10]))
    installed = models / RETRIEVAL_DIRS["ade"]
    index.save(installed / INDEX_FILE)
    fingerprint = read_card(models / "ade").files["model.onnx"]
    settings = {"weight": 0.5, "k": 4, "tau": 0.05, "tokens": len(index), "model_onnx_sha256": fingerprint}
    (installed / "retrieval.json").write_text(json.dumps(settings))
    loaded = load_extractors(models, RUNTIME, tasks=("ade",))
    extractor = loaded.extractors["ade"]
    assert isinstance(extractor.runner, RetrievalTokenRunner) and len(extractor.runner.index) == len(index)
    assert loaded.versions["ade"].endswith(f"+knn{len(index)}w0.5")
    text = labelled[0].text
    [findings] = loaded.run([text])[0:1]
    # The sentence is in the index, so its own labelled pairs come back through the sync's extractor.
    gold = {(text[slice(*drug)], text[slice(*event)]) for drug, event in labelled[0].pairs}
    assert gold and gold <= {(f.drug, f.event) for f in findings.ade}
    (installed / "retrieval.json").write_text(json.dumps({**settings, "model_onnx_sha256": "another model"}))
    again = load_extractors(models, RUNTIME, tasks=("ade",))
    assert not isinstance(again.extractors["ade"].runner, RetrievalTokenRunner)


@pytest.fixture(scope="module")
def phenotype_dir(tmp_path_factory: pytest.TempPathFactory, prerequisite: Any) -> Path:
    return built_model("phenotype", tmp_path_factory, prerequisite)


def _phenotype_records() -> list[dict[str, Any]]:
    from cds.model_task_phenotype import synthetic_records

    # a seed no training used, 10 % of words misspelled: labelled notes a site could bring
    return synthetic_records(40, 90210, 0.1, 0.15)


def test_phenotype_cli_reports_the_fields_the_notes_state(phenotype_dir: Path, tmp_path: Path) -> None:
    from models.phenotype.labels import FIELDS

    records = _phenotype_records()
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    models = tmp_path / "models"
    shutil.copytree(phenotype_dir, models / "phenotype")
    env = {**os.environ, "ONCOVIGIL_HOME": str(tmp_path / "home"), "ONCOVIGIL_MODELS_DIR": str(models)}
    args = ["refine", "phenotype", "--labels", str(labels), "--model", str(models / "phenotype"), "--json"]
    done = subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", *args, "--threads", "1"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["task"] == "phenotype" and set(report["per_label"]) <= set(FIELDS)
    assert {"site", "diagnosis"} <= set(report["per_label"])  # every generated note names its cancer
    assert "lora" not in report["macro_f1"] and 0.0 < report["micro_f1"]["current"] <= 1.0


def test_the_sync_loads_an_installed_phenotype_index(phenotype_dir: Path, tmp_path: Path) -> None:
    from cds.refine_taggers import phenotype_examples
    from models.phenotype import PhenotypeExtractor
    from models.phenotype.data import parse_record

    models = tmp_path / "models"
    shutil.copytree(phenotype_dir, models / "phenotype")
    plain = PhenotypeExtractor.load(models / "phenotype", RUNTIME)
    notes = [parse_record(r, "note") for r in _phenotype_records()[:5]]
    index = build_token_index(plain.runner, plain.labels, phenotype_examples(notes))
    installed = models / RETRIEVAL_DIRS["phenotype"]
    index.save(installed / INDEX_FILE)
    fingerprint = read_card(models / "phenotype").files["model.onnx"]
    settings = {"weight": 0.3, "k": 4, "tau": 0.05, "tokens": len(index), "model_onnx_sha256": fingerprint}
    (installed / "retrieval.json").write_text(json.dumps(settings))
    loaded = load_extractors(models, RUNTIME, tasks=("phenotype",))
    assert isinstance(loaded.extractors["phenotype"].runner, RetrievalTokenRunner)
    assert loaded.versions["phenotype"].endswith(f"+knn{len(index)}w0.3")
    got = loaded.run([notes[0].text])[0].phenotype
    assert got is not None and got.fields
    assert got.value("site") == notes[0].truth["site"]
