"""``onnx_fp16``: `oncovigil models build` writes the fp16 variant a GPU host serves, checked and in the card."""

from __future__ import annotations

import json
from pathlib import Path

from test_sync_kit import cli_env, run_cli

from models.card import verify_dir
from models.fp16 import FP16_FILE, FP16_MIN_AGREEMENT
from models.runtime import CPU, gpu_usable


def test_always_builds_the_fp16_toxicity_model_on_a_cpu_host(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    env = cli_env(tmp_path, models_dir=str(models_dir), onnx_fp16="always")
    built = run_cli(["models", "build", "--task", "toxicity"], env)
    assert built.returncode == 0, built.stderr[-2000:]
    target = models_dir / "toxicity"
    card = verify_dir(target)  # the fp16 file is hashed like the others
    assert FP16_FILE in card.files and (target / FP16_FILE).is_file()
    record = card.export["fp16"]
    assert record["label_agreement"] >= FP16_MIN_AGREEMENT and record["checked_on"] == CPU, record
    listed = run_cli(["models", "list"], env)
    assert any(
        line.startswith("toxicity ") and "built [fp32 int8 fp16]" in line for line in listed.stdout.splitlines()
    ), listed.stdout


def test_auto_builds_it_only_where_cuda_really_runs(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    built = run_cli(["models", "build", "--task", "toxicity"], cli_env(tmp_path, models_dir=str(models_dir)))
    assert built.returncode == 0, built.stderr[-2000:]
    record = json.loads((models_dir / "toxicity" / "model_card.json").read_text())["export"]["fp16"]
    # the build asks onnxruntime for a real CUDA session (not its provider list), whatever the serving providers
    if gpu_usable():
        assert record["checked_on"] == "CUDAExecutionProvider"
    else:
        assert record["file"] is None and "no CUDA device" in record["note"]
        assert not (models_dir / "toxicity" / FP16_FILE).exists()


def test_a_bad_mode_exits_2_with_the_choices(tmp_path: Path) -> None:
    result = run_cli(["models", "list"], cli_env(tmp_path, onnx_fp16="sometimes"))
    assert result.returncode == 2
    assert "onnx_fp16" in result.stderr and "always" in result.stderr and "Traceback" not in result.stderr
