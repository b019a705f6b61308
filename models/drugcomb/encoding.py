"""Tokenise text (pairs) with the ``tokenizers`` library and run an encoder ONNX graph in length buckets.

Runtime code: numpy, tokenizers and onnxruntime only (no torch, no transformers). Shared by the
drug-combination and the toxicity classifiers, which both read ``(text, text_pair)`` and emit one logit row each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ModelLoadError
from models.runtime import LoadedSession, bucket_by_length

TOKENIZER_FILE = "tokenizer.json"


def load_tokenizer(model_dir: Path, max_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` that truncates (longest first) to ``max_length`` and never pads by itself."""
    from tokenizers import Tokenizer

    path = model_dir / TOKENIZER_FILE
    if not path.is_file():
        raise ModelLoadError("OV-2006", f"{path} is missing; rebuild the model directory with `oncovigil models build`")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    return tokenizer


def encode(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str | None] | None = None) -> list[Any]:
    """Unpadded encodings; a ``None`` pair means a single-segment input."""
    if pairs is None:
        return list(tokenizer.encode_batch(list(texts)))
    inputs: list[Any] = [t if p is None else (t, p) for t, p in zip(texts, pairs, strict=True)]
    return list(tokenizer.encode_batch(inputs))


def pad_feeds(encodings: Sequence[Any], pad_id: int = 0) -> dict[str, np.ndarray]:
    """int64 ``input_ids``, ``attention_mask`` and ``token_type_ids`` padded on the right to the longest."""
    width = max(len(e.ids) for e in encodings)
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    types = np.zeros((len(encodings), width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = 1
        types[row, :n] = enc.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def run_logits(
    loaded: LoadedSession, encodings: Sequence[Any], max_batch: int = 32, max_tokens: int = 8192
) -> np.ndarray:
    """Logits for every encoding, in input order, batching similar lengths together."""
    if not encodings:
        return np.zeros((0, 0), dtype=np.float32)
    rows: list[np.ndarray | None] = [None] * len(encodings)
    for batch in bucket_by_length(encodings, lambda e: len(e.ids), max_batch=max_batch, max_tokens=max_tokens):
        (logits,) = loaded.run(pad_feeds([encodings[i] for i in batch]), outputs=["logits"])
        for i, row in zip(batch, np.asarray(logits, dtype=np.float32), strict=True):
            rows[i] = row
    return np.stack([r for r in rows if r is not None])


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=axis, keepdims=True)
    return out
