"""``toxicity-extractor.v1``: the 12 (or the model's own list of) radiotherapy symptoms of each note.

The pooled encoder classifier (``models.drugcomb.pooled``: CLS and mean of the note's tokens feed an MLP)
emits one row per note window: a status and a grade softmax per symptom (``labels.HeadLayout``). Runtime:
numpy, tokenizers and onnxruntime only. The symptom list and window length come from the model directory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.drugcomb.pooled import InputRow, PooledClassifier, load_pooled_classifier
from models.records import ToxicityFinding, pipe_batches
from models.registry import Registry, RuntimeConfig
from models.toxicity.head import predict_notes
from models.toxicity.labels import HeadLayout

REGISTRY_NAME = "toxicity-extractor.v1"


class ToxicityExtractor:
    """Status (present / absent / not mentioned) and stated grade of each symptom, per note."""

    def __init__(self, classifier: PooledClassifier, layout: HeadLayout) -> None:
        from tokenizers import Tokenizer

        self.classifier = classifier
        self.layout = layout
        # A second, non-truncating copy counts tokens to decide where to cut long notes.
        self._counter: Any = Tokenizer.from_str(classifier.tokenizer.to_str())
        self._counter.no_truncation()
        self._counter.no_padding()

    @property
    def symptoms(self) -> tuple[str, ...]:
        return self.layout.symptoms

    @property
    def window_tokens(self) -> int:
        return self.classifier.task.max_len - 2  # [CLS] and [SEP]

    def predict(self, batch: Sequence[str]) -> list[list[ToxicityFinding]]:
        """One finding per symptom (in the model's symptom order) for each note."""
        return predict_notes(batch, self.logits, self.count, self.window_tokens, self.layout)

    def pipe(self, stream: Iterable[str], batch_size: int = 16) -> Iterator[list[ToxicityFinding]]:
        return pipe_batches(self.predict, stream, batch_size)

    def count(self, text: str) -> int:
        """Tokens of ``text`` without the special tokens."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logit rows (one per text, no windowing), in input order."""
        return self.classifier.logits([InputRow(t) for t in texts])


def load_toxicity_extractor(model_dir: Path, config: RuntimeConfig | None = None) -> ToxicityExtractor:
    """Verify the directory's hashes, open the ONNX session the providers allow, and build the extractor."""
    config = config or RuntimeConfig()
    classifier = load_pooled_classifier(
        model_dir, config.providers, config.threads, config.allow_int8, config.require, min(config.max_batch, 16),
        config.spin,
    )
    return ToxicityExtractor(classifier, HeadLayout.from_labels(classifier.task.labels))


def register(registry: Registry) -> None:
    registry.register(REGISTRY_NAME, load_toxicity_extractor)
