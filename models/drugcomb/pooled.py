"""Encoder + pooled MLP head, the runtime half: numpy, tokenizers and onnxruntime only.

The ONNX graph is the (LoRA-merged) encoder exported by optimum as ``feature-extraction``; it returns
``last_hidden_state``. The head lives in ``head.npz`` and runs in numpy:

    features = [h_CLS ; mean of the real tokens (; mean of the focus tokens (; mean of the other tokens))]
    logits   = W2 · tanh(W1 · features + b1) + b2

"Focus" tokens are those inside given character spans of the first segment (the drugs of a candidate
combination), "other" tokens those inside a second set of spans (the sentence's drugs left out of it): the
classifier reads them directly instead of hoping the CLS vector learned to. An empty set pools to zeros.
The training half (``pooled_train``) computes exactly the same function in torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from models.errors import ModelLoadError
from models.model_files import invalid, load_json_object, load_npz, open_tokenizer
from models.runtime import LoadedSession, bucket_by_length

Pooling = Literal["cls_mean", "cls_mean_focus", "cls_mean_focus_other"]
POOLED_BLOCKS: dict[str, int] = {"cls_mean": 2, "cls_mean_focus": 3, "cls_mean_focus_other": 4}
FloatArray = npt.NDArray[np.float32]
TASK_FILE = "pooled_task.json"
HEAD_FILE = "head.npz"
HIDDEN = "last_hidden_state"
Span = tuple[int, int]


@dataclass(frozen=True)
class PooledTask:
    """What a pooled-head model directory holds; written as ``pooled_task.json``."""

    labels: list[str]
    pooling: Pooling
    max_len: int
    mlp_hidden: int
    top_layers: int
    base_model: str
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        (directory / TASK_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> PooledTask:
        path = directory / TASK_FILE
        if not path.is_file():
            raise ModelLoadError(
                "OV-2006", f"{path} is missing; rebuild the model directory with `oncovigil models build`"
            )
        data = load_json_object(path, "OV-2006")
        try:
            task = cls(**data)
        except TypeError as exc:  # a missing or unknown field
            raise invalid(path, "OV-2006", f"is not a valid task file ({exc})") from exc
        labels_ok = isinstance(task.labels, list) and all(isinstance(label, str) for label in task.labels)
        if not labels_ok or task.pooling not in POOLED_BLOCKS:
            raise invalid(path, "OV-2006", f"needs a list of labels and a pooling of {sorted(POOLED_BLOCKS)}")
        if not isinstance(task.max_len, int) or isinstance(task.max_len, bool) or task.max_len < 3:
            raise invalid(path, "OV-2006", f"has max_len {task.max_len!r}, not a whole number above 2")
        if not isinstance(task.extra, dict):
            raise invalid(path, "OV-2006", "has an extra field that is not an object")
        return task


@dataclass(frozen=True)
class InputRow:
    """One classifier input: text, optional second segment, focus and other character spans in ``text``."""

    text: str
    pair: str | None = None
    focus: tuple[Span, ...] = ()
    other: tuple[Span, ...] = ()


def load_tokenizer(model_dir: Path, max_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` truncating (longest first) to ``max_length``, never padding by itself."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError("OV-2006", f"{path} is missing; rebuild the model directory with `oncovigil models build`")
    tokenizer = open_tokenizer(path, "OV-2006")
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    return tokenizer


def encode_rows(tokenizer: Any, rows: Sequence[InputRow]) -> list[Any]:
    inputs: list[Any] = [r.text if r.pair is None else (r.text, r.pair) for r in rows]
    return list(tokenizer.encode_batch(inputs))


def focus_mask(encoding: Any, spans: Sequence[Span]) -> list[float]:
    """1.0 for first-segment tokens overlapping any span, else 0.0."""
    out: list[float] = []
    for (start, end), seq in zip(encoding.offsets, encoding.sequence_ids, strict=True):
        hit = seq == 0 and end > start and any(start < b and end > a for a, b in spans)
        out.append(1.0 if hit else 0.0)
    return out


def pad_batch(encodings: Sequence[Any], rows: Sequence[InputRow] | None = None) -> dict[str, np.ndarray]:
    """int64 ids / mask / token types and float32 focus / other masks, padded on the right to the longest."""
    width = max(len(e.ids) for e in encodings)
    n = len(encodings)
    ids = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    focus = np.zeros((n, width), dtype=np.float32)
    other = np.zeros((n, width), dtype=np.float32)
    for row, enc in enumerate(encodings):
        k = len(enc.ids)
        ids[row, :k] = enc.ids
        mask[row, :k] = 1
        types[row, :k] = enc.type_ids
        if rows is not None and rows[row].focus:
            focus[row, :k] = focus_mask(enc, rows[row].focus)
        if rows is not None and rows[row].other:
            other[row, :k] = focus_mask(enc, rows[row].other)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "focus_mask": focus,
        "other_mask": other,
    }


def pool(hidden: np.ndarray, feeds: dict[str, np.ndarray], pooling: Pooling) -> FloatArray:
    """The head's input features (see the module docstring)."""
    masks = [feeds["attention_mask"], feeds["focus_mask"], feeds["other_mask"]][: POOLED_BLOCKS[pooling] - 1]
    parts = [hidden[:, 0]]
    for mask in masks:
        weights = mask[..., None].astype(np.float32)
        parts.append((hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0))
    out: FloatArray = np.concatenate(parts, axis=-1).astype(np.float32)
    return out


class NumpyHead:
    """The two-layer tanh MLP of ``head.npz``."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w1 = weights["fc1.weight"].astype(np.float32)
        self.b1 = weights["fc1.bias"].astype(np.float32)
        self.w2 = weights["fc2.weight"].astype(np.float32)
        self.b2 = weights["fc2.bias"].astype(np.float32)

    @classmethod
    def load(cls, model_dir: Path) -> NumpyHead:
        path = model_dir / HEAD_FILE
        if not path.is_file():
            raise ModelLoadError(
                "OV-2006", f"{path} is missing; rebuild the model directory with `oncovigil models build`"
            )
        weights = load_npz(path, "OV-2006")
        shapes = {name: weights[name].shape for name in _HEAD_WEIGHTS if name in weights}
        if len(shapes) < len(_HEAD_WEIGHTS) or not _mlp_shapes(shapes):
            raise invalid(path, "OV-2006", f"needs the weights {list(_HEAD_WEIGHTS)} of a two-layer MLP, got {shapes}")
        if any(weights[name].dtype.kind not in "fiu" for name in _HEAD_WEIGHTS):
            raise invalid(path, "OV-2006", "holds weights that are not numbers")
        return cls(weights)

    @property
    def outputs(self) -> int:
        return int(self.b2.shape[0])

    def __call__(self, features: np.ndarray) -> FloatArray:
        hidden = np.tanh(features @ self.w1.T + self.b1)
        out: FloatArray = (hidden @ self.w2.T + self.b2).astype(np.float32)
        return out


_HEAD_WEIGHTS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def _mlp_shapes(shapes: dict[str, tuple[int, ...]]) -> bool:
    """fc1: [hidden, features] and [hidden]; fc2: [outputs, hidden] and [outputs]."""
    w1, b1, w2, b2 = (shapes[name] for name in _HEAD_WEIGHTS)
    return len(w1) == len(w2) == 2 and b1 == (w1[0],) and b2 == (w2[0],) and w2[1] == w1[0]


class PooledClassifier:
    """Runs encoder session + numpy head over input rows in length buckets; logits in input order."""

    def __init__(
        self, session: LoadedSession, tokenizer: Any, head: NumpyHead, task: PooledTask, max_batch: int = 32
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.head = head
        self.task = task
        self.max_batch = max_batch

    def logits(self, rows: Sequence[InputRow]) -> FloatArray:
        return self.logits_and_features(rows)[0]

    def logits_and_features(self, rows: Sequence[InputRow]) -> tuple[FloatArray, FloatArray]:
        """Logits and the head's input features (the pooled vectors retrieval compares), one ONNX pass."""
        labels = len(self.task.labels)
        if not rows:
            return np.zeros((0, labels), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
        encodings = encode_rows(self.tokenizer, rows)
        out = np.zeros((len(rows), labels), dtype=np.float32)
        vectors: FloatArray = np.zeros((len(rows), 0), dtype=np.float32)
        for batch in bucket_by_length(encodings, lambda e: len(e.ids), self.max_batch, 8192):
            feeds = pad_batch([encodings[i] for i in batch], [rows[i] for i in batch])
            (hidden,) = self.session.run(feeds, [HIDDEN])
            features = pool(np.asarray(hidden, dtype=np.float32), feeds, self.task.pooling)
            out[batch] = self.head(features)
            if vectors.shape[1] == 0:
                vectors = np.zeros((len(rows), features.shape[1]), dtype=np.float32)
            vectors[batch] = features
        return out, vectors


def load_pooled_classifier(
    model_dir: Path,
    providers: Sequence[str],
    threads: int = 0,
    allow_int8: bool = True,
    require: str | None = None,
    max_batch: int = 32,
    spin: bool = True,
) -> PooledClassifier:
    """Check the directory's hashes (when it has a card), open the session the providers allow, load the head."""
    from models.card import CARD_FILE, verify_dir
    from models.runtime import load_model_dir_session

    if (model_dir / CARD_FILE).is_file():
        verify_dir(model_dir)
    task = PooledTask.read(model_dir)
    session = load_model_dir_session(model_dir, providers, threads, allow_int8, require, spin)
    tokenizer = load_tokenizer(model_dir, task.max_len)
    head = NumpyHead.load(model_dir)
    if head.outputs != len(task.labels):
        labels = len(task.labels)
        raise invalid(
            model_dir / HEAD_FILE, "OV-2006", f"has {head.outputs} outputs but {TASK_FILE} names {labels} labels"
        )
    return PooledClassifier(session, tokenizer, head, task, max_batch)
