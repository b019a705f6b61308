"""The drug-combination classifier through LoRA -> merge -> optimum export -> onnxruntime on a tiny BERT,
``oncovigil eval drugcomb``, and the committed default model on a few sentences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_drugcomb_tinybert import build_tiny_bert

from models.card import ModelCard, verify_dir, write_card
from models.drugcomb import REGISTRY_NAME, load_drugcomb_extractor, parse_doc
from models.drugcomb.build import build_drugcomb_dir
from models.drugcomb.decode import decide
from models.drugcomb.evaluate import score_notes
from models.drugcomb.extractor import candidate_inputs
from models.drugcomb.pooled import InputRow, PooledTask
from models.drugcomb.pooled_build import load_merged
from models.drugcomb.pooled_train import torch_logits
from models.drugcomb.train import STRATEGIES, THRESHOLDS, DrugCombTrainConfig, train_drugcomb
from models.encoder_infer import softmax
from models.registry import RuntimeConfig, default_registry
from models.runtime import CPU

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "models" / "artifacts" / "drugcomb"


def doc(
    doc_id: str, sentence: str, drugs: list[str], rels: list[dict[str, Any]], paragraph: str = ""
) -> dict[str, Any]:
    spans = []
    for i, name in enumerate(drugs):
        start = sentence.index(name)
        spans.append({"span_id": i, "text": name, "start": start, "end": start + len(name)})
    return {"doc_id": doc_id, "sentence": sentence, "spans": spans, "rels": rels, "paragraph": paragraph or sentence}


DOCS = [
    doc(
        "a",
        "cisplatin plus paclitaxel gave a response .",
        ["cisplatin", "paclitaxel"],
        [{"class": "POS", "spans": [0, 1]}],
    ),
    doc(
        "b",
        "gemcitabine and carboplatin were given , then paclitaxel alone .",
        ["gemcitabine", "carboplatin", "paclitaxel"],
        [{"class": "COMB", "spans": [0, 1]}],
        "earlier text . gemcitabine and carboplatin were given , then paclitaxel alone . progression followed .",
    ),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real training and build code on a tiny BERT: train a few steps, calibrate, export, write the card."""
    root = tmp_path_factory.mktemp("tiny-drugcomb")
    base = build_tiny_bert(root / "base")
    drugs = root / "drugs.txt"
    drugs.write_text("Cisplatin\nPaclitaxel\nGemcitabine\nCarboplatin\n", encoding="utf-8")
    docs = [parse_doc(d) for d in DOCS]
    # context_chars > 0: the classifier reads (marked sentence, paragraph) pairs, so token types matter.
    config = DrugCombTrainConfig(
        context_chars=200,
        max_size=3,
        max_length=48,
        top_layers=1,
        mlp_hidden=16,
        lora_r=4,
        batch_size=2,
        max_steps=4,
        threads=1,
    )
    artifact = root / "artifact"
    summary = train_drugcomb(docs, docs, base, drugs, artifact, config)
    write_card(
        artifact,
        ModelCard(name=REGISTRY_NAME, task="drugcomb", version="0", base_model="tiny", base_model_source="test"),
    )
    model_dir = root / "model"
    build_drugcomb_dir(artifact, model_dir, int8=True, base_dir=base)
    return {
        "base": base,
        "dir": model_dir,
        "merged": load_merged(artifact, base),
        "summary": summary,
        "artifact": artifact,
    }


def test_training_writes_a_small_artifact_and_calibrates_the_decoding(tiny: dict[str, Any]) -> None:
    summary = tiny["summary"]
    assert (
        summary["steps"] == 4 and summary["train_examples"] == 2 + 3
    )  # both gold relations + every other subset of doc b
    assert set(summary["calibration_f1_pos_exact"]) == {f"{s}@{t}" for s in STRATEGIES for t in THRESHOLDS}
    task = PooledTask.read(tiny["dir"])
    assert task.extra["drugcomb"]["strategy"] == summary["decoding"]["strategy"]
    assert task.extra["drugcomb"]["threshold"] == summary["decoding"]["threshold"]
    names = {p.name for p in tiny["artifact"].iterdir()}
    assert names == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "head.npz",
        "pooled_task.json",
        "drugs.txt",
        "model_card.json",
    }
    card = verify_dir(tiny["dir"])
    assert {"model.onnx", "model_int8.onnx", "head.npz", "drugs.txt", "tokenizer.json"} <= set(card.files)
    assert card.export["parity"]["max_abs_diff"] < 1e-4


def test_onnx_probabilities_equal_torch_on_marked_pairs(tiny: dict[str, Any]) -> None:
    extractor = load_drugcomb_extractor(tiny["dir"], RuntimeConfig(providers=(CPU,), allow_int8=False))
    assert extractor.classifier.session.path.name == "model.onnx"
    docs = [parse_doc(d) for d in DOCS]
    per_doc = extractor.probabilities(docs)
    assert [len(c) for c, _ in per_doc] == [1, 4]
    rows: list[InputRow] = []
    per_sentence: list[list[tuple[int, ...]]] = []
    for d in docs:
        candidates, inputs = candidate_inputs(d, extractor.config.candidates)
        per_sentence.append(candidates)
        for row, members in zip(inputs, candidates, strict=True):
            # The context is the paragraph without the sentence; "a" has no paragraph beyond its sentence.
            assert row.pair is None if d.doc_id == "a" else (row.pair is not None and d.sentence not in row.pair)
            assert [row.text[a:b] for a, b in row.focus] == [d.spans[i].text for i in members]
            left_out = [s.text for i, s in enumerate(d.spans) if i not in members]
            assert [row.text[a:b] for a, b in row.other] == left_out
        rows += inputs
    expected = softmax(torch_logits(tiny["merged"], tiny["base"], rows, 48))
    got = np.concatenate([p for _, p in per_doc])
    assert np.abs(expected - got).max() < 1e-5
    torch_probs = np.split(expected, np.cumsum([len(c) for c in per_sentence])[:-1])
    # The decoding training calibrated, not the extractor's own config: a threshold or strategy lost on the
    # way into the model dir shows here.
    decoding = tiny["summary"]["decoding"]
    want = [
        decide(c, p, decoding["threshold"], decoding["strategy"])
        for c, p in zip(per_sentence, torch_probs, strict=True)
    ]
    decisions = extractor.classify(docs)
    assert [[(k.members, k.label) for k in d] for d in decisions] == [[(k.members, k.label) for k in d] for d in want]
    got_conf = [k.confidence for d in decisions for k in d]
    assert got_conf == pytest.approx([k.confidence for d in want for k in d], abs=1e-5)
    # The calibrated threshold may drop every candidate of these random weights; with none dropped the
    # comparison cannot be two empty lists.
    extractor.config = replace(extractor.config, threshold=0.0, strategy="all")
    everything = extractor.classify(docs)
    assert [[k.members for k in d] for d in everything] == per_sentence
    every_label = [decide(c, p, 0.0, "all") for c, p in zip(per_sentence, torch_probs, strict=True)]
    assert [[k.label for k in d] for d in everything] == [[k.label for k in d] for d in every_label]


def test_predict_finds_drugs_in_raw_text_and_reports_sentence_spans(tiny: dict[str, Any]) -> None:
    runtime = RuntimeConfig(providers=(CPU,), extra={"drug_names": {"Taxol": "paclitaxel"}})
    extractor = load_drugcomb_extractor(tiny["dir"], runtime)
    extractor.config = replace(extractor.config, threshold=0.0)  # keep every candidate: the weights are random
    text = "No drugs in this sentence. Cisplatin plus Taxol was given. Only cisplatin here."
    (found,) = extractor.predict([text])
    assert [c.drugs for c in found] == [("cisplatin", "paclitaxel")]
    start, end = found[0].sentence_span
    assert text[start:end] == "Cisplatin plus Taxol was given."
    assert extractor.predict(["Nothing to see."]) == [[]]


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
    data = tmp_path / "dev.jsonl"
    data.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n", encoding="utf-8")
    done = _cli("eval", "drugcomb", "--data", str(data), "--model", str(tiny["dir"]), "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert {"f1_pos_exact", "f1_pos_partial", "f1_any_exact", "f1_any_partial"} <= set(metrics)
    assert metrics["sentences"] == 2 and metrics["gold_relations"] == 2


def test_eval_command_rejects_a_bad_file_with_exit_code_2(tiny: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc_id": "x", "sentence": "a b", "spans": "none"}\n', encoding="utf-8")
    done = _cli("eval", "drugcomb", "--data", str(bad), "--model", str(tiny["dir"]), "--json", home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "OV-2071" in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_committed_default_model_on_a_few_sentences(tmp_path_factory: pytest.TempPathFactory) -> None:
    model_dir = tmp_path_factory.mktemp("drugcomb-default") / "drugcomb"
    card = build_drugcomb_dir(ARTIFACT, model_dir, int8=False)
    assert card.name == "drugcomb-extractor.v1" and card.dev_metrics["dev"]["f1_pos_exact"] >= 0.45  # regression floor
    assert card.export["parity"]["max_abs_diff"] < 1e-4
    runtime = RuntimeConfig(providers=(CPU,), extra={"drug_names": {"Taxol": "paclitaxel"}})
    extractor = default_registry().create("drugcomb-extractor.v1", model_dir, runtime)
    texts = [
        "Plan: Cycle 2 of carboplatin plus Taxol given today. Weight stable.",
        "Restaging CT shows a partial response to oxaliplatin/leucovorin/fluorouracil.",
        "Aspirin was taken for a headache.",
    ]
    given, responded, alone = extractor.predict(texts)
    assert [(c.drugs, c.label) for c in given] == [(("carboplatin", "paclitaxel"), "COMB")]
    assert (
        texts[0][given[0].sentence_span[0] : given[0].sentence_span[1]]
        == "Cycle 2 of carboplatin plus Taxol given today."
    )
    assert [(c.drugs, c.label) for c in responded] == [(("fluorouracil", "leucovorin", "oxaliplatin"), "POS")]
    assert alone == []


def test_raw_note_scoring_matches_drug_sets_in_overlapping_sentences(tiny: dict[str, Any]) -> None:
    extractor = load_drugcomb_extractor(tiny["dir"], RuntimeConfig(providers=(CPU,)))
    # With every candidate kept and the largest preferred, the full drug set is found whatever the weights.
    extractor.config = replace(extractor.config, threshold=0.0, strategy="largest_disjoint")
    text = "Plan: Continue Cisplatin plus paclitaxel as scheduled. Weight stable."
    start = text.index("Continue")
    truth = {"drugs": ["cisplatin", "paclitaxel"], "label": "COMB", "sentence_span": [start, text.index(" Weight")]}
    metrics = score_notes(extractor, [{"note_id": "n", "text": text, "combinations": [truth]}])
    assert (metrics["predicted"], metrics["f1_drugs"]) == (1, 1.0)
    # The random weights pick the class, so the labelled score follows whatever class was predicted.
    (found,) = extractor.predict([text])
    assert [c.drugs for c in found] == [("cisplatin", "paclitaxel")]
    assert metrics["f1_labelled"] == (1.0 if found[0].label == truth["label"] else 0.0)
    wrong = {**truth, "drugs": ["cisplatin", "gemcitabine"]}
    assert score_notes(extractor, [{"note_id": "n", "text": text, "combinations": [wrong]}])["f1_drugs"] == 0.0
