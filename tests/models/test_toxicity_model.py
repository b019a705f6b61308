"""The toxicity head through a real LoRA -> merge -> optimum export -> onnxruntime path on a tiny BERT,
the ``oncovigil eval toxicity`` command, and the committed default model on a few notes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_drugcomb_tinybert import build_tiny_bert

from models.card import ModelCard, verify_dir, write_card
from models.drugcomb.pooled import InputRow, PooledClassifier
from models.drugcomb.pooled_build import load_merged
from models.drugcomb.pooled_train import torch_logits
from models.fp16 import FP16_FILE, FP16_MIN_AGREEMENT
from models.registry import RuntimeConfig, default_registry
from models.runtime import CPU, load_session
from models.toxicity import (
    REGISTRY_NAME,
    HeadLayout,
    SymptomTruth,
    ToxicityNote,
    load_toxicity_extractor,
    predict_notes,
)
from models.toxicity.build import build_toxicity_dir
from models.toxicity.train import ToxicityTrainConfig, train_toxicity

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "models" / "artifacts" / "toxicity"
LAYOUT = HeadLayout(("fatigue", "diarrhea", "hematuria"))
NOTES = [
    "Weekly visit. Reports grade 2 fatigue. Denies diarrhea.",
    "No new complaints.",
    # Longer than the tiny model's 32-token window: read in several windows.
    "Radiation oncology weekly visit. Completed 10 fractions to the pelvis. Patient reports mild fatigue. "
    "Loose stools, CTCAE grade 2. Denies hematuria or dysuria. Plan: continue treatment, weekly review.",
]


def note(text: str, **truth: tuple[str, int | None, str]) -> ToxicityNote:
    """A note whose truth locates each mentioned symptom by the first occurrence of the given word."""
    statuses = {}
    for symptom in LAYOUT.symptoms:
        status, grade, word = truth.get(symptom, ("not_mentioned", None, ""))
        span = (text.index(word), text.index(word) + len(word)) if word else None
        statuses[symptom] = SymptomTruth(status, grade, span)
    return ToxicityNote("n", text, statuses)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real training and build code on a tiny BERT (3 symptoms, 32-token windows)."""
    root = tmp_path_factory.mktemp("tiny-toxicity")
    base = build_tiny_bert(root / "base")
    notes = [
        note(
            "Weekly visit. Reports grade 2 fatigue. Denies diarrhea.",
            fatigue=("present", 2, "fatigue"),
            diarrhea=("absent", None, "diarrhea"),
        ),
        note("Hematuria noted.", hematuria=("present", None, "Hematuria")),
        note("No new complaints."),
        note("Fatigue grade 1.", fatigue=("present", 1, "")),  # a mention without a span cannot teach a sentence
    ]
    config = ToxicityTrainConfig(
        symptoms=LAYOUT.symptoms,
        max_length=32,
        top_layers=1,
        mlp_hidden=16,
        lora_r=4,
        batch_size=2,
        max_steps=4,
        threads=1,
    )
    artifact = root / "artifact"
    summary = train_toxicity(notes, base, artifact, config)
    write_card(
        artifact,
        ModelCard(name=REGISTRY_NAME, task="toxicity", version="0", base_model="tiny", base_model_source="test"),
    )
    model_dir = root / "model"
    build_toxicity_dir(artifact, model_dir, int8=False, base_dir=base, fp16="always")
    return {"base": base, "dir": model_dir, "merged": load_merged(artifact, base), "summary": summary}


def test_training_reads_notes_sentence_by_sentence(tiny: dict[str, Any]) -> None:
    summary = tiny["summary"]
    assert (summary["train_notes"], summary["train_notes_without_spans"]) == (3, 1)
    assert summary["train_sentences"] == 3 + 1 + 1 and summary["steps"] == 4


def test_sentence_targets_put_each_status_in_the_sentence_that_states_it() -> None:
    from models.toxicity.train import sentence_examples

    text = "Weekly visit. Reports grade 2 fatigue. Denies diarrhea."
    examples = sentence_examples(
        note(text, fatigue=("present", 2, "fatigue"), diarrhea=("absent", None, "diarrhea")),
        LAYOUT,
        lambda t: len(t.split()),
        30,
    )
    assert examples is not None
    assert [e.row.text for e in examples] == ["Weekly visit.", "Reports grade 2 fatigue.", "Denies diarrhea."]
    #  statuses (fatigue, diarrhea, hematuria), then grade classes (-100: not taught)
    assert [e.targets for e in examples] == [
        (2, 2, 2, -100, -100, -100),
        (0, 2, 2, 2, -100, -100),
        (2, 1, 2, -100, -100, -100),
    ]


def test_onnx_logits_and_findings_equal_torch(tiny: dict[str, Any]) -> None:
    extractor = load_toxicity_extractor(tiny["dir"], RuntimeConfig(providers=(CPU,)))
    assert extractor.symptoms == LAYOUT.symptoms and extractor.classifier.session.provider == CPU

    def reference(pieces: list[str]) -> np.ndarray:
        return torch_logits(tiny["merged"], tiny["base"], [InputRow(p) for p in pieces], 32)

    windows: list[str] = []

    def recorded(pieces: list[str]) -> np.ndarray:
        windows.extend(pieces)
        return reference(pieces)

    expected = predict_notes(NOTES, recorded, extractor.count, extractor.window_tokens, LAYOUT)
    assert len(windows) > len(NOTES)  # the long note was split
    assert np.abs(extractor.logits(windows) - reference(windows)).max() < 1e-4
    got = extractor.predict(NOTES)
    assert [[(f.symptom, f.status, f.grade) for f in note] for note in got] == [
        [(f.symptom, f.status, f.grade) for f in note] for note in expected
    ]
    for mine, theirs in zip(got, expected, strict=True):
        assert [f.confidence for f in mine] == pytest.approx([f.confidence for f in theirs], abs=1e-4)
    # Other batches pad to other lengths, which moves the float sums in the last digits: same findings, and
    # confidences equal up to that noise (an exact comparison failed once in CI at the 6th decimal).
    piped = list(extractor.pipe(iter(NOTES), batch_size=2))
    assert [[(f.symptom, f.status, f.grade) for f in note] for note in piped] == [
        [(f.symptom, f.status, f.grade) for f in note] for note in got
    ]
    for mine, theirs in zip(piped, got, strict=True):
        assert [f.confidence for f in mine] == pytest.approx([f.confidence for f in theirs], abs=1e-5)


def test_fp16_variant_is_built_checked_and_hashed(tiny: dict[str, Any]) -> None:
    """``onnx_fp16 = always`` on a CPU build host: the pooled model's fp16 graph, checked against fp32 on CPU."""
    card = verify_dir(tiny["dir"])  # the card hashes the fp16 file too
    assert FP16_FILE in card.files
    fp16 = card.export["fp16"]
    assert fp16["file"] == FP16_FILE and fp16["label_agreement"] >= FP16_MIN_AGREEMENT and fp16["checked_on"] == CPU
    fp32 = load_toxicity_extractor(tiny["dir"], RuntimeConfig(providers=(CPU,))).classifier
    half = PooledClassifier(load_session(tiny["dir"] / FP16_FILE, [CPU]), fp32.tokenizer, fp32.head, fp32.task)
    rows = [InputRow(n) for n in NOTES]
    assert np.abs(half.logits(rows) - fp32.logits(rows)).max() < 2e-2


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONCOVIGIL_HOME": str(home), "ONCOVIGIL_ONNX_PROVIDERS": '["CPUExecutionProvider"]'}
    return subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


def test_eval_command_prints_the_contract_keys(tiny: dict[str, Any], tmp_path: Path) -> None:
    from cds.cohort import generate_cohort

    notes = [n.to_json() for n in generate_cohort(4, 11).notes]
    assert any(n["kind"] == "radiotherapy" for n in notes)
    data = tmp_path / "notes.jsonl"
    data.write_text("\n".join(json.dumps(n) for n in notes) + "\n", encoding="utf-8")
    done = _cli("eval", "toxicity", "--data", str(data), "--model", str(tiny["dir"]), "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert {"macro_f1", "accuracy", "per_symptom", "grade_accuracy"} <= set(metrics)
    assert set(metrics["per_symptom"]) == set(LAYOUT.symptoms)
    assert all(set(v) >= {"accuracy", "f1"} for v in metrics["per_symptom"].values())
    assert 0.0 <= metrics["macro_f1"] <= 1.0


def test_eval_command_rejects_a_bad_file_with_exit_code_2(tiny: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "radiotherapy", "text": 3}\n', encoding="utf-8")
    done = _cli("eval", "toxicity", "--data", str(bad), "--model", str(tiny["dir"]), "--json", home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "OV-2073" in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_committed_default_model_reads_a_few_notes(tmp_path_factory: pytest.TempPathFactory) -> None:
    model_dir = tmp_path_factory.mktemp("toxicity-default") / "toxicity"
    card = build_toxicity_dir(ARTIFACT, model_dir, int8=False)
    assert card.name == "toxicity-extractor.v1" and card.dev_metrics["notes_dev"]["macro_f1"] >= 0.9
    extractor = default_registry().create("toxicity-extractor.v1", model_dir, RuntimeConfig(providers=(CPU,)))
    notes = [
        "On-treatment visit, week 3.\n\nGU: Reports CTCAE grade 2 urinary frequency. Denies hematuria.\n\n"
        "GI: Loose stools (grade 1).\n\nPlan: Continue current plan.",
        "Radiation oncology OTV note\n\nSymptom review: Denies fatigue. No dysuria.",
    ]
    first, second = (({f.symptom: (f.status, f.grade) for f in note}) for note in extractor.predict(notes))
    assert first["urinary frequency"] == ("present", 2)
    assert first["hematuria"][0] == "absent"
    assert first["diarrhea"] == ("present", 1)
    assert first["erectile dysfunction"][0] == "not_mentioned"
    assert second["fatigue"][0] == "absent" and second["urinary tract pain"][0] == "absent"
    assert second["proctitis"][0] == "not_mentioned"
