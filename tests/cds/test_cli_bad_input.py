"""Bad arguments, data and model folders given to `eval`, `refine`, `train` and `models dev-data`.

Each is refused with exit code 2 and one line naming its code, never a traceback or an internal error, and
before any work: no model is built and nothing is written. The model folders here are fakes (a garbage
``model.onnx`` passes as an ONNX folder until it is loaded), so these tests need no built model.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cds.model_tasks import FRACTION, SHARE, get_task, out_dir_problem
from models import ModelCard, write_card
from tests.cds.test_sync_kit import cli_env, run_cli

NOT_UTF8 = b'{"record": "caf\xe9"}\n'


def _refused(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode == 2, result.stderr
    assert code in result.stderr and "Traceback" not in result.stderr and "OV-0099" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
    return result.stderr


def _cli(args: list[str], home: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cli_env(home, **settings), timeout=300)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def fake_onnx(tmp_path: Path) -> Path:
    """Passes for an ONNX model folder until onnxruntime opens it: what the data checks must come before."""
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not a protobuf")
    return folder


def _empty_ade(root: Path) -> Path:
    folder = root / "ade-empty"
    folder.mkdir()
    (folder / "DRUG-AE.rel").write_text("", encoding="utf-8")
    (folder / "ADE-NEG.txt").write_text("", encoding="utf-8")
    return folder


# --- 1. `eval e2e` reports bad settings as every other command does


def test_eval_e2e_with_a_bad_config_file_exits_2(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("x = [\n", encoding="utf-8")
    _refused(_cli(["--config", str(config), "eval", "e2e", "--truth", str(tmp_path)], home), "OV-0003")


def test_eval_e2e_with_a_bad_setting_exits_2(home: Path, tmp_path: Path) -> None:
    _refused(_cli(["eval", "e2e", "--truth", str(tmp_path)], home, fhir_max_retries="abc"), "OV-0001")


# --- 2. a --model folder the user named that does not load is bad input


@pytest.mark.parametrize(
    ("kind", "code"),
    [("empty", "OV-2007"), ("empty-config", "OV-2082"), ("bad-card", "OV-2004"), ("garbage-onnx", "OV-2002")],
)
def test_eval_with_a_bad_model_folder_exits_2(kind: str, code: str, home: Path, tmp_path: Path) -> None:
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "empty-config":
        (folder / "config.json").write_text("{}", encoding="utf-8")
    elif kind == "bad-card":
        (folder / "model_card.json").write_text("not json", encoding="utf-8")
    elif kind == "garbage-onnx":
        (folder / "model.onnx").write_bytes(b"not a protobuf")
    data = tmp_path / "ade-data"
    data.mkdir()
    (data / "DRUG-AE.rel").write_text("1|Nausea after cisplatin.|Nausea|0|6|cisplatin|13|22\n", encoding="utf-8")
    (data / "ADE-NEG.txt").write_text("2 NEG The patient recovered.\n", encoding="utf-8")
    _refused(_cli(["eval", "ade", "--data", str(data), "--model", str(folder), "--json"], home), code)


def test_eval_with_another_tasks_model_names_both_tasks(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "drugcomb-model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not a protobuf")
    write_card(folder, ModelCard(name="d", task="drugcomb", version="0", base_model="t", base_model_source="t"))
    data = tmp_path / "notes.jsonl"
    data.write_text('{"text": "x"}\n', encoding="utf-8")
    message = _refused(
        _cli(["eval", "toxicity", "--data", str(data), "--model", str(folder), "--json"], home), "OV-0150"
    )
    assert "drugcomb" in message and "toxicity" in message and "OV-2073" not in message


# --- 3. --data of the wrong kind is refused before the default model is resolved (or built)


@pytest.mark.parametrize(("task", "folder"), [("ade", False), ("toxicity", True), ("drugcomb", True)])
def test_eval_refuses_data_of_the_wrong_kind_before_building_a_model(
    task: str, folder: bool, home: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    if folder:
        data.mkdir()
    else:
        data.write_text("x\n", encoding="utf-8")
    message = _refused(_cli(["eval", task, "--data", str(data), "--json"], home), "OV-0018")
    assert ("is a folder" if folder else "is not a folder") in message
    models = home / "models"
    assert not models.exists() or not any(models.iterdir())


# --- 4. empty data is refused, not scored as zeros


def test_eval_ade_on_empty_corpus_files_exits_2(home: Path, tmp_path: Path, fake_onnx: Path) -> None:
    data = _empty_ade(tmp_path)
    message = _refused(_cli(["eval", "ade", "--data", str(data), "--model", str(fake_onnx), "--json"], home), "OV-0151")
    assert "no sentences" in message


@pytest.mark.parametrize(("task", "what"), [("phenotype", "notes"), ("recommender", "visits")])
def test_eval_on_an_empty_file_exits_2(task: str, what: str, home: Path, tmp_path: Path, fake_onnx: Path) -> None:
    data = tmp_path / "empty.jsonl"
    data.write_text("\n", encoding="utf-8")
    message = _refused(_cli(["eval", task, "--data", str(data), "--model", str(fake_onnx), "--json"], home), "OV-0151")
    assert f"no {what} in {data}" in message


def test_eval_phenotype_on_an_empty_folder_exits_2(home: Path, tmp_path: Path, fake_onnx: Path) -> None:
    data = tmp_path / "bulk"
    data.mkdir()
    args = ["eval", "phenotype", "--data", str(data), "--model", str(fake_onnx), "--json"]
    assert "no notes in" in _refused(_cli(args, home), "OV-0151")


def test_eval_e2e_on_empty_truth_exits_2(home: Path, tmp_path: Path) -> None:
    truth = tmp_path / "notes.jsonl"
    truth.write_text("", encoding="utf-8")
    # refused before the server is asked: nothing listens on this port
    args = ["eval", "e2e", "--truth", str(truth), "--url", "http://127.0.0.1:9/fhir", "--json"]
    assert "no notes in" in _refused(_cli(args, home), "OV-0151")


# --- 5. non-UTF-8 files are named, not an internal error


def test_eval_summaries_on_a_non_utf8_file_exits_2(home: Path, tmp_path: Path, fake_onnx: Path) -> None:
    data = tmp_path / "dev.jsonl"
    data.write_bytes(NOT_UTF8)
    args = ["eval", "summaries", "--data", str(data), "--model", str(fake_onnx), "--json"]
    message = _refused(_cli(args, home), "OV-0122")
    assert f"{data}:1" in message and "UTF-8" in message


def test_eval_e2e_on_non_utf8_truth_exits_2(home: Path, tmp_path: Path) -> None:
    truth = tmp_path / "notes.jsonl"
    truth.write_bytes(b'{"patient_id": "p1"}\n' + NOT_UTF8)
    args = ["eval", "e2e", "--truth", str(truth), "--url", "http://127.0.0.1:9/fhir", "--json"]
    message = _refused(_cli(args, home), "OV-0046")
    assert f"{truth}:2" in message and "UTF-8" in message


# --- 6. an --out that cannot be a folder is refused before any work


def test_refine_with_out_a_file_exits_2_before_any_work(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.write_text("keep me", encoding="utf-8")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("{}\n", encoding="utf-8")
    for target in (out, out / "sub"):
        _refused(_cli(["refine", "drugcomb", "--labels", str(labels), "--out", str(target)], home), "OV-0152")
    assert out.read_text(encoding="utf-8") == "keep me"
    assert not (home / "models").exists()


def test_dev_data_with_out_a_file_exits_2(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "dev"
    out.write_text("keep me", encoding="utf-8")
    _refused(_cli(["models", "dev-data", "--task", "drugcomb", "--out", str(out)], home), "OV-0152")
    assert out.read_text(encoding="utf-8") == "keep me"


# --- 7. numbers out of range


@pytest.mark.parametrize(
    "flag", [["--target", "-1"], ["--target", "nan"], ["--target", "1.5"], ["--threads", "-3"]]
)
def test_refine_refuses_numbers_out_of_range(flag: list[str], home: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text("{}\n", encoding="utf-8")
    _refused(_cli(["refine", "toxicity", "--labels", str(labels), *flag], home), "OV-0153")
    assert not (home / "refine").exists()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0", "1", "1.5"])
def test_dev_data_refuses_a_dev_fraction_outside_0_1(value: str, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "dev"
    args = ["models", "dev-data", "--task", "drugcomb", "-o", f"dev_fraction={value}", "--out", str(out)]
    assert "dev_fraction" in _refused(_cli(args, home), "OV-0015")
    assert not out.exists()


def test_option_ranges_reject_what_float_accepts() -> None:
    drugcomb = get_task("drugcomb")
    assert drugcomb.non_numeric_options({"dev_fraction": "nan", "threshold": "-inf", "seed": "3"}) == [
        "dev_fraction=nan",
        "threshold=-inf",
    ]
    assert drugcomb.out_of_range_options({"dev_fraction": "1", "calibration_fraction": "0", "threshold": "1"}) == [
        "dev_fraction=1 (must be (0, 1))"
    ]
    assert str(FRACTION) == "(0, 1)" and str(SHARE) == "[0, 1]"
    for name in ("recommender", "summaries"):
        assert get_task(name).out_of_range_options({"dev_fraction": "0"}) == ["dev_fraction=0 (must be (0, 1))"]


def test_out_dir_problem(tmp_path: Path) -> None:
    afile = tmp_path / "f"
    afile.write_text("", encoding="utf-8")
    assert out_dir_problem(tmp_path) is None and out_dir_problem(tmp_path / "new" / "deeper") is None
    assert out_dir_problem(afile) == "is not a folder; pass a folder (created when missing)"
    assert f"is under {afile}" in (out_dir_problem(afile / "sub") or "")


# --- 8. a --data-dir that is a file is not said to be missing


def test_train_with_data_dir_a_file_says_it_is_not_a_directory(home: Path, tmp_path: Path) -> None:
    afile = tmp_path / "data"
    afile.write_text("", encoding="utf-8")
    message = _refused(_cli(["train", "ade", "--data-dir", str(afile)], home), "OV-0016")
    assert "is not a directory" in message and "does not exist" not in message
