"""``toxicity-extractor.v1``: the 12 (or the model's own list of) radiotherapy symptoms of each note.

Runtime: numpy, tokenizers and onnxruntime only. The symptom list, window length and labels come from
the model directory (``encoder_task.json``), never from code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.card import verify_dir
from models.encoder_infer import EncoderTokenizer
from models.encoder_train import TASK_FILE
from models.errors import ModelLoadError
from models.records import ToxicityFinding, pipe_batches
from models.registry import Registry, RuntimeConfig
from models.runtime import LoadedSession, bucket_by_length, load_model_dir_session
from models.toxicity.head import predict_notes
from models.toxicity.labels import HeadLayout

REGISTRY_NAME = "toxicity-extractor.v1"


class ToxicityExtractor:
    """Status (present / absent / not mentioned) and stated grade of each symptom, per note."""

    def __init__(
        self, session: LoadedSession, tokenizer: EncoderTokenizer, layout: HeadLayout, max_batch: int = 16
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.layout = layout
        self.max_batch = max_batch

    @property
    def symptoms(self) -> tuple[str, ...]:
        return self.layout.symptoms

    def predict(self, batch: Sequence[str]) -> list[list[ToxicityFinding]]:
        """One finding per symptom (in the model's symptom order) for each note."""
        return predict_notes(batch, self.logits, self._count, self.tokenizer.max_len - 2, self.layout)

    def pipe(self, stream: Iterable[str], batch_size: int = 16) -> Iterator[list[ToxicityFinding]]:
        return pipe_batches(self.predict, stream, batch_size)

    def _count(self, text: str) -> int:
        return self.tokenizer.count(text) - 2

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logit rows (one per text, no windowing), in input order."""
        encodings = self.tokenizer.encode_batch(texts)
        rows: list[np.ndarray | None] = [None] * len(encodings)
        for batch in bucket_by_length(encodings, lambda e: len(e.ids), self.max_batch, 8192):
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.full((len(batch), width), self.tokenizer.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (logits,) = self.session.run(feeds, ["logits"])
            for row, i in enumerate(batch):
                rows[i] = np.asarray(logits[row], dtype=np.float32)
        return np.stack([r for r in rows if r is not None])


def read_task(model_dir: Path) -> dict[str, Any]:
    path = model_dir / TASK_FILE
    if not path.is_file():
        raise ModelLoadError("OV-2006", f"{path} is missing; rebuild the toxicity model with `oncovigil models build`")
    task: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return task


def load_toxicity_extractor(model_dir: Path, config: RuntimeConfig | None = None) -> ToxicityExtractor:
    """Verify the directory's hashes, open the ONNX session the providers allow, and build the extractor."""
    config = config or RuntimeConfig()
    verify_dir(model_dir)
    task = read_task(model_dir)
    layout = HeadLayout.from_labels(task["labels"])
    session = load_model_dir_session(model_dir, config.providers, config.threads, config.allow_int8, config.require)
    tokenizer = EncoderTokenizer(model_dir / "tokenizer.json", int(task["max_len"]))
    return ToxicityExtractor(session, tokenizer, layout, max_batch=min(config.max_batch, 16))


def register(registry: Registry) -> None:
    registry.register(REGISTRY_NAME, load_toxicity_extractor)
