"""The model card every model directory carries, and the hash check that guards it.

``model_card.json`` names the registry entry that reads the directory, the labels, the training data and
its source, the hyperparameters, the dev metrics, the export settings and the sha256 of every other file.
The runtime refuses a directory whose files do not match.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.errors import ModelIntegrityError, ModelLoadError

CARD_FILE = "model_card.json"


class TrainingData(BaseModel):
    """One data set a model was trained or evaluated on."""

    model_config = ConfigDict(extra="allow")

    name: str
    source: str
    licence: str
    split: str


class ModelCard(BaseModel):
    """Everything needed to know what a model directory is and whether it is intact."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str  # registry name, e.g. "ade-extractor.v1"
    task: str
    version: str
    labels: list[str] = Field(default_factory=list)
    base_model: str
    base_model_source: str
    training_data: list[TrainingData] = Field(default_factory=list)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    dev_metrics: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.name != CARD_FILE and "__pycache__" not in p.parts and not p.name.startswith(".")
    )


def write_card(directory: Path, card: ModelCard) -> ModelCard:
    """Hash every file in ``directory`` (except the card itself), record them and write the card."""
    files = {p.relative_to(directory).as_posix(): sha256_file(p) for p in _listed_files(directory)}
    final = card.model_copy(update={"files": files})
    text = json.dumps(final.model_dump(mode="json"), indent=2) + "\n"
    (directory / CARD_FILE).write_text(text, encoding="utf-8")
    return final


def read_card(directory: Path) -> ModelCard:
    """Parse the card without checking hashes (for listing and for building on an artifact)."""
    path = directory / CARD_FILE
    if not path.is_file():
        raise ModelLoadError(
            "OV-2003",
            f"{directory} has no {CARD_FILE}; it is not an OncoVigil model directory "
            "(build one with `oncovigil models build` or `oncovigil export TASK`)",
        )
    try:
        return ModelCard.model_validate_json(path.read_bytes())  # bytes: non-UTF-8 is a ValidationError too
    except ValidationError as exc:
        # The locations tell the reader which field to look at; pydantic's full text is too long for one line.
        where = sorted({".".join(str(part) for part in error["loc"]) or "(whole file)" for error in exc.errors()})
        raise ModelLoadError(
            "OV-2004",
            f"{path} is not a valid model card ({exc.error_count()} errors, in: {', '.join(where)}); rebuild it",
        ) from exc


def verify_dir(directory: Path) -> ModelCard:
    """Return the card when every recorded file is present with the recorded sha256, else raise."""
    card = read_card(directory)
    if not card.files:
        raise ModelIntegrityError("OV-2020", f"{directory / CARD_FILE} records no file hashes; rebuild the model")
    for name, expected in sorted(card.files.items()):
        path = directory / name
        if not path.is_file():
            raise ModelIntegrityError(
                "OV-2021", f"{path} is listed in the model card but missing; rebuild the model directory"
            )
        if sha256_file(path) != expected:
            raise ModelIntegrityError(
                "OV-2022",
                f"{path} does not match the sha256 in {CARD_FILE} (tampered or partly written); "
                "rebuild it with `oncovigil models build --force`",
            )
    return card
