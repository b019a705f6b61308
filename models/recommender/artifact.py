"""``recommender.json``: what a recommender directory needs besides weights, shared by artifact and model dir.

It names the registry entry, the base model the adapter belongs to, the prompt format (so serving asks
exactly the question training taught) and the two thresholds calibrated on the dev split: ``threshold``
(recommend at or above it) and ``warning_threshold`` (at or below it; warn about an order scoring below it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ModelLoadError
from models.model_files import invalid, load_json_object
from models.recommender.prompt import PromptFormat

SETTINGS_FILE = "recommender.json"
REGISTRY_NAME = "recommender.v1"
_RESTORE = "retrain or restore the file"


@dataclass(frozen=True)
class RecommenderSettings:
    threshold: float
    base: str
    prompt: PromptFormat = field(default_factory=PromptFormat)
    registry_name: str = REGISTRY_NAME
    warning_threshold: float | None = None  # None: warn below ``threshold`` itself

    def to_json(self) -> dict[str, Any]:
        return {
            "registry_name": self.registry_name,
            "base": self.base,
            "threshold": self.threshold,
            "warning_threshold": self.warning_threshold,
            "prompt": self.prompt.to_json(),
        }


def write_settings(directory: Path, settings: RecommenderSettings) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings.to_json(), indent=2, sort_keys=True) + "\n"
    (directory / SETTINGS_FILE).write_text(text, encoding="utf-8")


def read_settings(directory: Path) -> RecommenderSettings:
    path = directory / SETTINGS_FILE
    if not path.is_file():
        raise ModelLoadError(
            "OV-2019",
            f"{path} is missing; this is not a recommender directory (run `oncovigil train recommender`)",
        )
    data = load_json_object(path, "OV-2019", _RESTORE)
    try:
        return RecommenderSettings(
            threshold=float(data["threshold"]),
            base=str(data["base"]),
            prompt=PromptFormat.from_json(dict(data.get("prompt", {}))),
            registry_name=str(data.get("registry_name", REGISTRY_NAME)),
            warning_threshold=None if data.get("warning_threshold") is None else float(data["warning_threshold"]),
        )
    except (ValueError, KeyError, TypeError, OverflowError) as exc:  # OverflowError: float() of a huge integer
        raise invalid(path, "OV-2019", f"is not valid ({exc})", _RESTORE) from exc
