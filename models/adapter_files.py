"""Writing a LoRA adapter folder for the repository: peft's files, nothing that names the training machine.

peft records the folder the base weights were read from (``base_model_name_or_path``), a path inside this
machine's virtual environment, and writes a README.md template that repeats it. Every load passes the base
model explicitly, so the recorded value is only a label: it becomes the base model's name. It is rewritten
after saving, because a hub name set before makes peft's save look the model up on the hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"


def save_adapter_files(model: Any, out_dir: Path, base_name: str) -> None:
    """``adapter_config.json`` + ``adapter_model.safetensors`` of a peft model, the base named ``base_name``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    (out_dir / "README.md").unlink(missing_ok=True)  # model_card.json is the card
    path = out_dir / ADAPTER_CONFIG  # our models hold one adapter, "default", which peft saves at the top
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")  # peft's own layout
