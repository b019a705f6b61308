"""``oncovigil eval ade --data DIR --json``: one JSON object with the contract keys; bad input exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from models.backbone import minilm_dir
from tests.models.tiny_encoder import save_with_tokenizer

KEYS = {f"{kind}_{metric}" for kind in ("drug", "ade", "pair") for metric in ("precision", "recall", "f1")} | {
    "pair_f1_relaxed",
    "pair_precision_relaxed",
    "pair_recall_relaxed",
}
LABELS = ["O", "B-DRUG", "I-DRUG", "B-AE", "I-AE"]


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONCOVIGIL_HOME": str(home), "ONCOVIGIL_ONNX_PROVIDERS": '["CPUExecutionProvider"]'}
    return subprocess.run(
        [str(Path(sys.executable).parent / "oncovigil"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two positive sentences (document offsets, as upstream) and one negative one."""
    directory = tmp_path_factory.mktemp("ade-data")
    title = "Intravenous azithromycin-induced ototoxicity."
    second = "Severe hepatotoxicity developed after methotrexate."
    (directory / "DRUG-AE.rel").write_text(
        f"10030778|{title}|ototoxicity|43|54|azithromycin|22|34\n"
        f"10030779|{second}|hepatotoxicity|107|121|methotrexate|138|150\n",
        encoding="utf-8",
    )
    (directory / "ADE-NEG.txt").write_text("10030780 NEG The patient recovered fully.\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own Hugging Face token classifier (random, tiny) with the ADE labels."""
    directory = tmp_path_factory.mktemp("user-hf")
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
        num_labels=5,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return save_with_tokenizer(BertForTokenClassification(config), directory, minilm_dir())


def test_eval_prints_one_json_object_with_the_contract_keys(
    corpus_dir: Path, tiny_hf_model: Path, tmp_path: Path
) -> None:
    result = _run(["eval", "ade", "--data", str(corpus_dir), "--json", "--model", str(tiny_hf_model)], tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert set(metrics) == KEYS
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    # The HF directory was exported once into the models cache and is reused.
    exported = list((tmp_path / "models" / "_user").glob("ade-*/model.onnx"))
    assert len(exported) == 1


def test_eval_on_missing_data_exits_2_with_a_message(tmp_path: Path) -> None:
    result = _run(["eval", "ade", "--data", str(tmp_path / "nowhere"), "--json"], tmp_path)
    assert result.returncode == 2
    assert "OV-0018" in result.stderr and "does not exist" in result.stderr
    assert result.stdout == ""


def test_eval_on_a_folder_without_the_corpus_files_exits_2(tiny_hf_model: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run(["eval", "ade", "--data", str(empty), "--json", "--model", str(tiny_hf_model)], tmp_path)
    assert result.returncode == 2
    assert "OV-2063" in result.stderr and "DRUG-AE.rel" in result.stderr


def test_eval_on_a_malformed_rel_file_exits_2(tiny_hf_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "DRUG-AE.rel").write_text("123|only three|fields\n", encoding="utf-8")
    (bad / "ADE-NEG.txt").write_text("", encoding="utf-8")
    result = _run(["eval", "ade", "--data", str(bad), "--json", "--model", str(tiny_hf_model)], tmp_path)
    assert result.returncode == 2
    assert "OV-2060" in result.stderr


def test_eval_of_an_unknown_task_exits_2(corpus_dir: Path, tmp_path: Path) -> None:
    result = _run(["eval", "nosuchtask", "--data", str(corpus_dir), "--json"], tmp_path)
    assert result.returncode == 2
    assert "unknown model task" in result.stderr
