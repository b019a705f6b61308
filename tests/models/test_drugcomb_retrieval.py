"""Retrieval for the drug-combination extractor on a tiny BERT through the real train -> build -> onnxruntime
path: candidates are embedded with the head's own input features, a zero weight changes nothing, and labelled
sentences in the index fix the weak model's relations without retraining."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_drugcomb_tinybert import build_tiny_drugcomb

from models.drugcomb import DrugCombExtractor, load_drugcomb_extractor, parse_doc
from models.drugcomb.candidates import CLASS_LABELS
from models.drugcomb.data import DrugCombDoc
from models.drugcomb.evaluate import score_docs
from models.drugcomb.extractor import candidate_inputs
from models.drugcomb.retrieval import CandidateIndex, RetrievalDrugCombExtractor, build_index, gold_classes
from models.errors import DataFormatError
from models.registry import RuntimeConfig
from models.runtime import CPU


def drugcomb_doc(doc_id: str, sentence: str, drugs: list[str], rels: list[tuple[str, list[int]]]) -> DrugCombDoc:
    spans = []
    for i, name in enumerate(drugs):
        start = sentence.index(name)
        spans.append({"span_id": i, "text": name, "start": start, "end": start + len(name)})
    relations = [{"class": label, "spans": members} for label, members in rels]
    return parse_doc({"doc_id": doc_id, "sentence": sentence, "spans": spans, "rels": relations, "paragraph": ""})


LABELLED = [
    drugcomb_doc("a", "cisplatin plus paclitaxel gave a response .", ["cisplatin", "paclitaxel"], [("POS", [0, 1])]),
    drugcomb_doc(
        "b",
        "gemcitabine and carboplatin were given , then paclitaxel alone .",
        ["gemcitabine", "carboplatin", "paclitaxel"],
        [("COMB", [0, 1])],
    ),
    drugcomb_doc(
        "c", "carboplatin with gemcitabine gave progression .", ["carboplatin", "gemcitabine"], [("NEG", [0, 1])]
    ),
    drugcomb_doc("d", "cisplatin then paclitaxel were given weekly .", ["cisplatin", "paclitaxel"], []),
]


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> DrugCombExtractor:
    folder = build_tiny_drugcomb(tmp_path_factory.mktemp("tiny-drugcomb-retrieval"), LABELLED)
    return load_drugcomb_extractor(folder, RuntimeConfig(providers=(CPU,), threads=1))


def test_features_come_from_the_same_pass_as_the_logits(student: DrugCombExtractor) -> None:
    _, rows = candidate_inputs(LABELLED[1], student.config.candidates)
    logits, features = student.classifier.logits_and_features(rows)
    assert features.shape == (len(rows), 4 * 32)  # CLS, mean, focus, other of a hidden size of 32
    # The features are what the head read: feeding them to it again gives the same logits, row by row.
    assert np.allclose(student.classifier.head(features), logits, atol=1e-5)
    assert not np.allclose(features[0], features[-1])  # each candidate pools its own drugs


def test_gold_classes_label_every_candidate() -> None:
    candidates = [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    labels = [CLASS_LABELS[i] for i in gold_classes(LABELLED[1], candidates)]
    assert labels == ["COMB", "NO_COMB", "NO_COMB", "NO_COMB"]


def test_index_round_trips(student: DrugCombExtractor, tmp_path: Path) -> None:
    index = build_index(student, LABELLED)
    assert len(index) == 1 + 4 + 1 + 1  # a sentence of three drugs has four candidate subsets
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)
    index.save(tmp_path / "index.npz")
    again = CandidateIndex.load(tmp_path / "index.npz")
    assert np.array_equal(again.labels, index.labels) and len(index.add(again)) == 2 * len(index)
    with pytest.raises(DataFormatError, match="OV-2124"):
        CandidateIndex.load(tmp_path / "missing.npz")


def test_weight_zero_is_the_model_and_labelled_sentences_fix_it(student: DrugCombExtractor) -> None:
    index = build_index(student, LABELLED)
    plain = student.classify(LABELLED)
    assert RetrievalDrugCombExtractor(student, index, weight=0.0).classify(LABELLED) == plain
    before = score_docs(student, LABELLED)
    assert before["f1_any_exact"] < 1.0 or before["f1_pos_exact"] < 1.0  # the weak model is wrong somewhere
    fixed: Any = RetrievalDrugCombExtractor(student, index, weight=0.9, k=1)
    after = score_docs(fixed, LABELLED)
    assert after["f1_any_exact"] == 1.0 and after["f1_pos_exact"] == 1.0
    # an empty index leaves the model alone whatever the weight
    empty = CandidateIndex(np.zeros((0, 128), dtype=np.float32), np.zeros(0, dtype=np.int64))
    assert RetrievalDrugCombExtractor(student, empty, weight=0.9).classify(LABELLED) == plain
