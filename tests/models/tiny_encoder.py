"""Helper (no tests): save a random tiny encoder as a Hugging Face folder with a real backbone's tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def save_with_tokenizer(model: Any, directory: Path, tokenizer_dir: Path) -> Path:
    """``model.save_pretrained(directory)`` plus the tokenizer files of ``tokenizer_dir``."""
    model.save_pretrained(directory)
    for name in TOKENIZER_FILES:
        (directory / name).write_bytes((tokenizer_dir / name).read_bytes())
    return directory
