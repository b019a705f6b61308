"""Retrieval for the toxicity extractor on a tiny BERT through the real train -> build -> onnxruntime path:
the index embeds with the extractor's own encoder, a zero weight changes nothing, and labelled examples
added to the index fix what the model gets wrong without any retraining."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_drugcomb_tinybert import build_tiny_bert

from models.card import ModelCard, write_card
from models.errors import DataFormatError
from models.registry import RuntimeConfig
from models.runtime import CPU
from models.toxicity import REGISTRY_NAME, HeadLayout, SymptomTruth, ToxicityNote, load_toxicity_extractor
from models.toxicity.build import build_toxicity_dir
from models.toxicity.evaluate import score_notes
from models.toxicity.head import as_truth_map
from models.toxicity.retrieval import RetrievalIndex, RetrievalToxicityExtractor, build_index, forward
from models.toxicity.train import ToxicityTrainConfig, train_toxicity

LAYOUT = HeadLayout(("fatigue", "diarrhea", "hematuria"))


def note(note_id: str, text: str, **truth: tuple[str, int | None, str]) -> ToxicityNote:
    statuses = {}
    for symptom in LAYOUT.symptoms:
        status, grade, word = truth.get(symptom, ("not_mentioned", None, ""))
        span = (text.index(word), text.index(word) + len(word)) if word else None
        statuses[symptom] = SymptomTruth(status, grade, span)
    return ToxicityNote(note_id, text, statuses)


FIRST = "Reports grade 2 fatigue. Denies diarrhea."
FOURTH = "Denies fatigue. Loose stools grade 1 diarrhea."
LABELLED = [
    note("a", FIRST, fatigue=("present", 2, "fatigue"), diarrhea=("absent", None, "diarrhea")),
    note("b", "Hematuria noted.", hematuria=("present", None, "Hematuria")),
    note("c", "No new complaints."),
    note("d", FOURTH, fatigue=("absent", None, "fatigue"), diarrhea=("present", 1, "diarrhea")),
]


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A deliberately weak student: two training steps on one note."""
    root = tmp_path_factory.mktemp("tiny-retrieval")
    base = build_tiny_bert(root / "base")
    config = ToxicityTrainConfig(
        symptoms=LAYOUT.symptoms,
        max_length=32,
        top_layers=1,
        mlp_hidden=16,
        lora_r=4,
        batch_size=2,
        max_steps=2,
        threads=1,
    )
    artifact = root / "artifact"
    train_toxicity(LABELLED[:1], base, artifact, config)
    write_card(
        artifact, ModelCard(name=REGISTRY_NAME, task="toxicity", version="0", base_model="t", base_model_source="t")
    )
    build_toxicity_dir(artifact, root / "model", int8=False, base_dir=base)
    return load_toxicity_extractor(root / "model", RuntimeConfig(providers=(CPU,), threads=1))


def test_forward_gives_the_extractors_logits_and_unit_vectors(student: Any) -> None:
    texts = ["Reports grade 2 fatigue.", "Hematuria noted."]
    logits, vectors = forward(student, texts)
    assert np.allclose(logits, student.logits(texts), atol=1e-5)
    assert vectors.shape[0] == 2 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_index_round_trips_and_refuses_another_symptom_list(student: Any, tmp_path: Path) -> None:
    index, skipped = build_index(student, LABELLED)
    assert skipped == 0 and len(index) == 6  # one row per sentence window
    index.save(tmp_path / "index.npz")
    again = RetrievalIndex.load(tmp_path / "index.npz")
    assert again.symptoms == index.symptoms and np.array_equal(again.status, index.status)
    assert len(index.add(again)) == 12
    other = RetrievalIndex(("nausea",), index.vectors, index.status[:, :1], index.grade[:, :1])
    with pytest.raises(DataFormatError, match="OV-2123"):
        index.add(other)
    with pytest.raises(DataFormatError, match="OV-2124"):
        RetrievalIndex.load(tmp_path / "missing.npz")


def test_weight_zero_is_the_model_and_labelled_examples_fix_it_without_training(student: Any) -> None:
    index, _ = build_index(student, LABELLED)
    texts = [n.text for n in LABELLED]
    plain = [as_truth_map(p) for p in student.predict(texts)]
    unchanged = RetrievalToxicityExtractor(student, index, weight=0.0)
    assert [as_truth_map(p) for p in unchanged.predict(texts)] == plain
    before = score_notes(student, LABELLED)
    assert before["accuracy"] < 1.0  # the weak student is wrong somewhere
    retrieval = RetrievalToxicityExtractor(student, index, weight=0.9, k=1)
    after = score_notes(retrieval, LABELLED)  # type: ignore[arg-type]
    assert after["accuracy"] == 1.0 and after["grade_accuracy"] == 1.0
