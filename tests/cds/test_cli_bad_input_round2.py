"""Round two of bad settings and arguments: each exits 2 with one coded line, before any work is done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds.eval_e2e import _jsonl
from cds.settings import load_settings
from cds.summarise import read_eval_file
from tests.cds.test_cli_bad_config import assert_usage_error, cli_env, run_cli

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "models" / "artifacts"


# 1. settings ---------------------------------------------------------------------------------------------
def test_a_deeply_nested_toml_config_is_not_valid_toml(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000)
    line = assert_usage_error(run_cli(["--config", str(deep), "runs"], cli_env(tmp_path / "h")), "OV-0003")
    assert str(deep) in line


@pytest.mark.parametrize(
    ("setting", "value"),
    [("onnx_threads", "-1"), ("onnx_providers", "[]"), ("onnx_providers", '[""]'), ("cohort_patients", "0"),
     ("cohort_patients", "10000")],
)
def test_out_of_range_settings_are_refused(tmp_path: Path, setting: str, value: str) -> None:
    line = assert_usage_error(run_cli(["runs"], cli_env(tmp_path / "h", **{setting: value})), "OV-0001")
    assert setting in line and "--patients" not in line


def test_provider_names_are_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOVIGIL_ONNX_PROVIDERS", '[" CPUExecutionProvider "]')
    assert load_settings().onnx_providers == ["CPUExecutionProvider"]


# 2. trusted issuers --------------------------------------------------------------------------------------
def _issuers(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "issuers.json"
    if kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00\x81binary")
    elif kind == "deep":
        path.write_text("[" * 100_000)
    else:
        path.write_text(json.dumps({"https://ehr.example": {"allowed_jku": []}}))
    return path


@pytest.mark.parametrize(
    ("kind", "code"), [("folder", "OV-0160"), ("binary", "OV-0011"), ("deep", "OV-0011"), ("no-jwks", "OV-0012")]
)
def test_an_unusable_trusted_issuers_file_is_named(tmp_path: Path, kind: str, code: str) -> None:
    path = _issuers(tmp_path, kind)
    done = run_cli(["serve"], cli_env(tmp_path / "h", cds_trusted_issuers_file=str(path)))
    line = assert_usage_error(done, code)
    assert str(path) in line and "ONCOVIGIL_CDS_TRUSTED_ISSUERS_FILE" in line


def test_serve_without_trusted_issuers_prints_one_code(tmp_path: Path) -> None:
    line = assert_usage_error(run_cli(["serve"], cli_env(tmp_path / "h")), "OV-0014")
    assert "OV-3010" not in line and "ONCOVIGIL_CDS_TRUSTED_ISSUERS_FILE" in line


# 3. task options -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "option"),
    [("drugcomb", "strategy=nosuch"), ("drugcomb", "max_size=1"), ("drugcomb", "batch_size=0"),
     ("toxicity", "epochs=0"), ("ade", "max_len=2"), ("phenotype", "learning_rate=0"),
     ("toxicity", "max_steps=-1"), ("recommender", "max_steps=0"), ("summaries", "batch_size=0")],
)
def test_bad_training_options_are_refused_before_work(tmp_path: Path, task: str, option: str) -> None:
    out = tmp_path / "out"
    done = run_cli(["train", task, "-o", option, "--out", str(out)], cli_env(tmp_path / "h"))
    assert option in assert_usage_error(done, "OV-0015")
    assert not out.exists()


# 4. export --artifact --------------------------------------------------------------------------------------
def test_export_refuses_another_tasks_artifact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["export", "drugcomb", "--artifact", str(ARTIFACTS / "toxicity"), "--out", str(out)]
    line = assert_usage_error(run_cli(args, cli_env(tmp_path / "h")), "OV-0150")
    assert "toxicity" in line and not out.exists()


def test_export_refuses_an_artifact_with_a_garbage_card(tmp_path: Path) -> None:
    artifact = tmp_path / "art"
    artifact.mkdir()
    (artifact / "model_card.json").write_text("{nope")
    args = ["export", "drugcomb", "--artifact", str(artifact), "--out", str(tmp_path / "out")]
    assert str(artifact) in assert_usage_error(run_cli(args, cli_env(tmp_path / "h")), "OV-2004")


def test_export_of_a_named_artifact_missing_a_file_is_the_users_to_fix(tmp_path: Path) -> None:
    artifact = tmp_path / "dc"
    shutil.copytree(ARTIFACTS / "drugcomb", artifact)
    (artifact / "drugs.txt").unlink()
    args = ["export", "drugcomb", "--artifact", str(artifact), "--out", str(tmp_path / "out")]
    done = run_cli(args, cli_env(tmp_path / "h"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and str(artifact / "drugs.txt") in done.stderr


# 5. cohort generate --------------------------------------------------------------------------------------
@pytest.mark.parametrize("blocker", ["fhir", "notes.jsonl"])
def test_cohort_generate_checks_the_whole_layout_before_writing(tmp_path: Path, blocker: str) -> None:
    out = tmp_path / "D"
    out.mkdir()
    (out / "fhir").write_text("") if blocker == "fhir" else (out / blocker).mkdir()
    done = run_cli(["cohort", "generate", "--out", str(out), "--patients", "2"], cli_env(tmp_path / "h"))
    assert str(out / blocker) in assert_usage_error(done, "OV-0043")
    assert sorted(p.name for p in out.iterdir()) == [blocker]


# 6. JSONL with U+2028 ------------------------------------------------------------------------------------
def test_e2e_truth_lines_may_hold_a_line_separator(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"text": "a\u2028b"}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert _jsonl(path) == [{"text": "a\u2028b"}]


def test_summary_eval_lines_may_hold_a_line_separator(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"record": {}, "reference": "x\u2028y"}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(Exception) as caught:  # the record is empty: the line must fail as one line, line 1
        read_eval_file(path)
    assert ":1 is not" in str(caught.value) and ":2" not in str(caught.value)


# 7. db upgrade base --------------------------------------------------------------------------------------
def test_db_upgrade_base_is_refused(tmp_path: Path) -> None:
    line = assert_usage_error(run_cli(["db", "upgrade", "base"], cli_env(tmp_path / "h")), "OV-0140")
    assert "downgrades are not offered" in line
