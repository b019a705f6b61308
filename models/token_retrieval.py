"""Retrieval for the token taggers (ADE, phenotype): labelled tokens, compared by the tagger's own hidden states.

Every token of a labelled sentence is embedded by the tagger's ONNX pass (its last hidden state, exposed next to
the logits; L2-normalised) and labelled with its gold BIO label (``align_bio``, the training rule). At inference
each token's ``k`` nearest labelled tokens vote on its label (``models.knn``) and the vote is blended into the
tagger's token probabilities before the usual decoding, with a weight calibrated on held-out labelled sentences:
more labelled sentences, better boundaries and vocabulary, nothing retrained. numpy and onnxruntime only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.encoder_infer import TokenClassifierRunner, TokenOutput
from models.encoder_train import IGNORE, SpanExample, align_bio
from models.errors import DataFormatError, ModelLoadError
from models.knn import Vote, blend, unit, vote
from models.model_files import REFINE, load_npz, npz_names, rows_agree

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
INDEX_FILE = "retrieval_index.npz"


@dataclass(frozen=True)
class TokenIndex:
    """Unit vectors of labelled tokens and their label ids in ``labels`` (the tagger's BIO labels)."""

    labels: tuple[str, ...]
    vectors: FloatArray
    label_ids: IntArray

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def add(self, other: TokenIndex) -> TokenIndex:
        if other.labels != self.labels:
            raise DataFormatError("OV-2126", "the two token retrieval indexes were built for different labels")
        if not len(self):
            return other
        vectors = np.concatenate([self.vectors, other.vectors])
        return TokenIndex(self.labels, vectors, np.concatenate([self.label_ids, other.label_ids]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        names = np.array(json.dumps(list(self.labels)))
        np.savez_compressed(path, vectors=self.vectors, label_ids=self.label_ids, labels=names)

    @classmethod
    def load(cls, path: Path) -> TokenIndex:
        if not path.is_file():
            raise DataFormatError("OV-2124", f"{path} is not a retrieval index; build one with `oncovigil refine`")
        data = load_npz(path, "OV-2124", REFINE, DataFormatError, ("labels", "vectors", "label_ids"))
        labels = npz_names(data, "labels", path, "OV-2124", REFINE, DataFormatError)
        rows_agree(data, path, "OV-2124", REFINE, DataFormatError)
        return cls(labels, data["vectors"].astype(np.float32), data["label_ids"].astype(np.int64))


def _require_hidden(runner: TokenClassifierRunner) -> None:
    if not runner.has_hidden:
        raise ModelLoadError(
            "OV-2013", "this tagger's ONNX model has no hidden-state output; rebuild it with `oncovigil models build`"
        )


def _hidden(runner: TokenClassifierRunner, texts: Sequence[str]) -> list[TokenOutput]:
    _require_hidden(runner)
    return runner.run(texts, hidden=True)


def build_token_index(
    runner: TokenClassifierRunner, labels: Sequence[str], examples: Sequence[SpanExample]
) -> TokenIndex:
    """Index every token of the labelled examples (text longer than the tagger's window: its first window)."""
    label_ids = {name: i for i, name in enumerate(labels)}
    vectors: list[FloatArray] = []
    ids: list[int] = []
    for example, output in zip(examples, _hidden(runner, [e.text for e in examples]), strict=True):
        assert output.hidden is not None
        gold = align_bio(output.offsets, example.spans, label_ids)
        keep = [j for j, label in enumerate(gold) if label != IGNORE]
        vectors.append(unit(output.hidden[keep]))
        ids += [gold[j] for j in keep]
    width = vectors[0].shape[1] if vectors else 0
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, width), dtype=np.float32)
    return TokenIndex(tuple(labels), stacked.astype(np.float32), np.asarray(ids, dtype=np.int64))


class RetrievalTokenRunner(TokenClassifierRunner):
    """A tagger runner whose token probabilities carry the labelled neighbours' vote.

    With ``remember`` (calibration) the model pass and the vote of each text are kept, so another ``weight``
    re-blends without running the encoder again; the sync leaves it off (its texts are never seen twice).
    """

    def __init__(
        self, base: TokenClassifierRunner, index: TokenIndex, weight: float, k: int = 8, tau: float = 0.05
    ) -> None:
        super().__init__(base.session, base.tokenizer, base.max_batch, base.max_tokens)
        _require_hidden(base)
        self.base = base
        self.index = index
        self.weight = weight
        self.k = k
        self.tau = tau
        self.remember = False
        self._parts: dict[str, tuple[TokenOutput, Vote]] = {}

    def _part(self, outputs: Sequence[TokenOutput]) -> list[tuple[TokenOutput, Vote]]:
        parts = []
        for output in outputs:
            assert output.hidden is not None
            classes = output.probs.shape[1]
            labels = self.index.label_ids[:, None]
            parts.append((output, vote(unit(output.hidden), self.index.vectors, labels, classes, self.k, self.tau)))
        return parts

    def run(self, texts: Sequence[str], hidden: bool = False) -> list[TokenOutput]:
        if self.remember:
            missing = [t for t in dict.fromkeys(texts) if t not in self._parts]
            self._parts.update(zip(missing, self._part(_hidden(self.base, missing)), strict=True))
            parts = [self._parts[t] for t in texts]
        else:
            parts = self._part(_hidden(self.base, texts))
        out = []
        for output, votes in parts:
            mixed = blend(output.probs[:, None, :], votes, self.weight)[:, 0, :]
            out.append(TokenOutput(output.offsets, mixed, output.hidden if hidden else None))
        return out
