"""numpy-only inference for exported encoders: tokenise with offsets, batch by length, run, decode.

No torch and no transformers here: the ``tokenizers`` library reads ``tokenizer.json`` and onnxruntime
runs the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.card import CARD_FILE, verify_dir
from models.encoder_export import HIDDEN_OUTPUT
from models.encoder_train import TASK_FILE
from models.errors import ModelLoadError
from models.model_files import invalid, load_json_object, open_tokenizer
from models.registry import RuntimeConfig
from models.runtime import LoadedSession, bucket_by_length, load_model_dir_session

FloatArray = npt.NDArray[np.float32]


class EncoderTokenizer:
    """A fast WordPiece tokenizer with character offsets, truncated to ``max_len`` tokens."""

    def __init__(self, tokenizer_json: Path, max_len: int) -> None:
        if not tokenizer_json.is_file():
            raise ModelLoadError("OV-2008", f"{tokenizer_json} is missing; the model directory needs tokenizer.json")
        self._tokenizer = open_tokenizer(tokenizer_json, "OV-2008")
        saved_padding = self._tokenizer.padding  # the saved pad token: BERT's [PAD] is 0, MPNet's <pad> is 1
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_len)
        self._counter = open_tokenizer(tokenizer_json, "OV-2008")
        self._counter.no_padding()
        self._counter.no_truncation()
        self.max_len = max_len
        if saved_padding is not None:
            self.pad_id = int(saved_padding["pad_id"])
        else:  # MPNet's vocabulary also holds an unused [PAD]: only a tokenizer saved without padding gets here
            self.pad_id = int(self._tokenizer.token_to_id("[PAD]") or self._tokenizer.token_to_id("<pad>") or 0)

    def encode_batch(self, texts: Sequence[str]) -> list[Any]:
        return list(self._tokenizer.encode_batch(list(texts)))

    def count(self, text: str) -> int:
        """Tokens of ``text`` including the two special tokens, without truncation."""
        return len(self._counter.encode(text).ids)


@dataclass(frozen=True)
class TokenOutput:
    """Per real token (specials dropped): character offsets, label probabilities, optional hidden state."""

    offsets: list[tuple[int, int]]
    probs: FloatArray
    hidden: FloatArray | None


def read_labels(model_dir: Path) -> list[str]:
    """Labels in model order from config.json's ``id2label``."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelLoadError("OV-2009", f"{path} is missing; the model directory needs config.json with id2label")
    id2label = load_json_object(path, "OV-2009").get("id2label") or {}
    if not isinstance(id2label, dict) or not all(_is_index(k) and isinstance(v, str) for k, v in id2label.items()):
        raise invalid(path, "OV-2009", "has no id2label object mapping label numbers to names")
    return [id2label[k] for k in sorted(id2label, key=int)]


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit()


def softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: FloatArray = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    return result


class TokenClassifierRunner:
    """Runs a token-classification session over texts in length buckets."""

    def __init__(
        self,
        session: LoadedSession,
        tokenizer: EncoderTokenizer,
        max_batch: int = 32,
        max_tokens: int = 4096,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self.has_hidden = HIDDEN_OUTPUT in session.output_names

    def run(self, texts: Sequence[str], hidden: bool = False) -> list[TokenOutput]:
        encodings = self.tokenizer.encode_batch(texts)
        results: list[TokenOutput | None] = [None] * len(texts)
        want_hidden = hidden and self.has_hidden
        outputs = ["logits", HIDDEN_OUTPUT] if want_hidden else ["logits"]
        for batch in bucket_by_length(encodings, lambda e: len(e.ids), self.max_batch, self.max_tokens):
            feeds = self._feeds([encodings[i] for i in batch])
            produced = self.session.run(feeds, outputs)
            probs = softmax(np.asarray(produced[0], dtype=np.float32))
            states = np.asarray(produced[1], dtype=np.float32) if want_hidden else None
            for row, index in enumerate(batch):
                encoding = encodings[index]
                keep = [j for j, special in enumerate(encoding.special_tokens_mask) if not special]
                results[index] = TokenOutput(
                    offsets=[tuple(encoding.offsets[j]) for j in keep],
                    probs=probs[row, keep],
                    hidden=None if states is None else states[row, keep],
                )
        return [r for r in results if r is not None]

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Mean-pooled, L2-normalised last hidden states (sentence-transformers style) of short texts."""
        if not self.has_hidden:
            raise ModelLoadError("OV-2013", "this ONNX model has no hidden-state output; rebuild it")
        encodings = self.tokenizer.encode_batch(texts)
        vectors: list[FloatArray | None] = [None] * len(texts)
        for batch in bucket_by_length(encodings, lambda e: len(e.ids), self.max_batch, self.max_tokens):
            feeds = self._feeds([encodings[i] for i in batch])
            states = np.asarray(self.session.run(feeds, [HIDDEN_OUTPUT])[0], dtype=np.float32)
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (states * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
            for row, index in enumerate(batch):
                vectors[index] = pooled[row]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([v for v in vectors if v is not None]).astype(np.float32)

    def _feeds(self, encodings: Sequence[Any]) -> dict[str, npt.NDArray[np.int64]]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@dataclass(frozen=True)
class EntitySpan:
    start: int
    end: int
    kind: str
    confidence: float


def viterbi_bio(probs: FloatArray, labels: Sequence[str]) -> list[int]:
    """Most likely label sequence in which every ``I-X`` follows ``B-X`` or ``I-X`` (no orphan insides)."""
    count = len(labels)
    allowed = np.ones((count, count), dtype=bool)  # allowed[previous, current]
    start_ok = np.ones(count, dtype=bool)
    for j, label in enumerate(labels):
        if label.startswith("I-"):
            kind = label[2:]
            start_ok[j] = False
            allowed[:, j] = [lab in (f"B-{kind}", f"I-{kind}") for lab in labels]
    log_probs = np.log(np.maximum(probs, 1e-12))
    penalty = np.where(allowed, 0.0, -1e9)
    score = np.where(start_ok, log_probs[0], -1e9) if len(probs) else np.zeros(count)
    back = np.zeros((len(probs), count), dtype=np.int64)
    for t in range(1, len(probs)):
        candidates = score[:, None] + penalty
        back[t] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[t]
    path = [int(score.argmax())] if len(probs) else []
    for t in range(len(probs) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def decode_bio(text: str, output: TokenOutput, labels: Sequence[str], constrained: bool = True) -> list[EntitySpan]:
    """Group BIO token labels into character spans, snapped to whole words.

    With ``constrained`` the labels come from a BIO-valid Viterbi path, else from the per-token argmax
    (then an ``I-X`` after anything but ``X`` opens a new entity). A word piece continuing a word that is
    inside an entity joins it, so spans never cut a word in two.
    """
    best = viterbi_bio(output.probs, labels) if constrained else [int(i) for i in output.probs.argmax(axis=-1)]
    spans: list[list[Any]] = []  # [start, end, kind, [probabilities]]
    current: list[Any] | None = None
    for (start, end), label_id, probs in zip(output.offsets, best, output.probs, strict=True):
        label = labels[int(label_id)]
        glued = current is not None and start == current[1] and _inside_word(text, start)
        if label == "O" and not glued:
            current = None
            continue
        kind = label[2:] if label != "O" else None
        if current is not None and (glued or (label.startswith("I-") and kind == current[2])):
            current[1] = end
            current[3].append(float(probs[label_id]))
            continue
        assert kind is not None
        current = [start, end, kind, [float(probs[label_id])]]
        spans.append(current)
    return [_snap(text, EntitySpan(s, e, k, float(np.mean(p)))) for s, e, k, p in spans]


def _inside_word(text: str, position: int) -> bool:
    return 0 < position < len(text) and text[position - 1].isalnum() and text[position].isalnum()


def _snap(text: str, span: EntitySpan) -> EntitySpan:
    start, end = span.start, span.end
    while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while end < len(text) and text[end - 1].isalnum() and text[end].isalnum():
        end += 1
    return EntitySpan(start, end, span.kind, span.confidence)


def card_decoding(model_dir: Path, verify: bool) -> dict[str, float]:
    """The decoding settings (thresholds chosen on the dev split) a model card carries; hashes checked first."""
    if verify or (model_dir / CARD_FILE).is_file():
        return dict(verify_dir(model_dir).hyperparameters.get("decoding") or {})
    return {}


def open_token_classifier(
    model_dir: Path, runtime: RuntimeConfig, max_batch: int, max_tokens: int
) -> TokenClassifierRunner:
    """A token classifier's ONNX session and tokenizer, with the window length it was trained with."""
    max_len = 128
    if (model_dir / TASK_FILE).is_file():
        max_len = load_json_object(model_dir / TASK_FILE, "OV-2190").get("max_len", 128)
        # [CLS] and [SEP] take two places: a shorter window holds no text
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 3:
            raise invalid(model_dir / TASK_FILE, "OV-2190", f"has max_len {max_len!r}, not a whole number above 2")
    session = load_model_dir_session(
        model_dir, runtime.providers, runtime.threads, runtime.allow_int8, runtime.require, runtime.spin
    )
    tokenizer = EncoderTokenizer(model_dir / "tokenizer.json", max_len)
    return TokenClassifierRunner(session, tokenizer, max_batch, max_tokens)
