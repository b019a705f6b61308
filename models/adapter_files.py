"""Writing a LoRA adapter folder for the repository: peft's files, nothing that names the training machine.

peft records the folder the base weights were read from (``base_model_name_or_path``), a path inside this
machine's virtual environment, and writes a README.md template that repeats it. Every load passes the base
model explicitly, so the recorded value is only a label: it is the base model's name here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_adapter_files(model: Any, out_dir: Path, base_name: str) -> None:
    """``adapter_config.json`` + ``adapter_model.safetensors`` of a peft model, the base named ``base_name``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for config in model.peft_config.values():
        config.base_model_name_or_path = base_name
    model.save_pretrained(str(out_dir))
    (out_dir / "README.md").unlink(missing_ok=True)  # model_card.json is the card
