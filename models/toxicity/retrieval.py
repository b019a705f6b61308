"""Retrieval for the toxicity extractor: labelled sentences embedded with the extractor's own encoder.

At inference each sentence window is embedded by the same ONNX pass that produces its logits (mean of the
last hidden state, L2-normalised); its ``k`` nearest labelled sentences vote (softmax of cosine / ``tau``)
on each symptom's status and grade, and the vote is blended with the model's probabilities:
``p = (1 - w) * p_model + w * p_knn``, with ``w`` calibrated on held-out labelled notes. Adding labelled
notes to the index changes predictions without retraining anything. numpy and onnxruntime only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.drugcomb.pooled import HIDDEN, InputRow, encode_rows, pad_batch, pool
from models.encoder_infer import softmax
from models.errors import DataFormatError
from models.knn import Vote, blend, unit, vote
from models.model_files import REFINE, load_npz, npz_names, rows_agree
from models.records import ToxicityFinding, pipe_batches
from models.runtime import bucket_by_length
from models.toxicity.data import ToxicityNote
from models.toxicity.extractor import ToxicityExtractor
from models.toxicity.head import note_windows, predict_notes
from models.toxicity.labels import GRADE_CLASSES, STATUSES, HeadLayout

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
INDEX_FILE = "retrieval_index.npz"
NO_GRADE = -1


@dataclass(frozen=True)
class RetrievalIndex:
    """Labelled sentence windows: unit vectors and, per symptom, a status index and a grade class (or -1)."""

    symptoms: tuple[str, ...]
    vectors: FloatArray
    status: IntArray
    grade: IntArray

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def add(self, other: RetrievalIndex) -> RetrievalIndex:
        if other.symptoms != self.symptoms:
            raise DataFormatError("OV-2123", "the two retrieval indexes were built for different symptom lists")
        return RetrievalIndex(
            self.symptoms,
            np.concatenate([self.vectors, other.vectors]),
            np.concatenate([self.status, other.status]),
            np.concatenate([self.grade, other.grade]),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        symptoms = np.array(json.dumps(list(self.symptoms)))
        np.savez_compressed(path, vectors=self.vectors, status=self.status, grade=self.grade, symptoms=symptoms)

    @classmethod
    def load(cls, path: Path) -> RetrievalIndex:
        if not path.is_file():
            raise DataFormatError("OV-2124", f"{path} is not a retrieval index; build one with `oncovigil refine`")
        data = load_npz(path, "OV-2124", REFINE, DataFormatError, ("symptoms", "vectors", "status", "grade"))
        symptoms = npz_names(data, "symptoms", path, "OV-2124", REFINE, DataFormatError)
        rows_agree(data, path, "OV-2124", REFINE, DataFormatError)
        return cls(symptoms, data["vectors"].astype(np.float32), data["status"], data["grade"])


def window_labels(note: ToxicityNote, layout: HeadLayout, windows: Sequence[tuple[int, int]]) -> list[list[int]] | None:
    """Per window, the status index of each symptom then its grade class (-1: none stated / not present).

    A mentioned symptom belongs to the window holding its span and is not mentioned in the others (the same
    rule as training); ``None`` when a mentioned symptom has no span to place it.
    """
    owner: dict[str, int] = {}
    for symptom in layout.symptoms:
        truth = note.truth[symptom]
        if truth.status == "not_mentioned":
            continue
        if truth.span is None:
            return None
        hits = [i for i, (a, b) in enumerate(windows) if truth.span[0] < b and truth.span[1] > a]
        if not hits:
            return None
        owner[symptom] = hits[0]
    rows: list[list[int]] = []
    for index in range(len(windows)):
        statuses, grades = [], []
        for symptom in layout.symptoms:
            truth = note.truth[symptom]
            status = truth.status if owner.get(symptom) == index else "not_mentioned"
            statuses.append(STATUSES.index(status))
            grades.append((truth.grade or 0) if status == "present" else NO_GRADE)
        rows.append(statuses + grades)
    return rows


def forward(extractor: ToxicityExtractor, texts: Sequence[str]) -> tuple[FloatArray, FloatArray]:
    """Logit rows and unit embeddings (mean of the last hidden state) of ``texts``, from one ONNX pass."""
    classifier = extractor.classifier
    width = len(classifier.task.labels)
    logits = np.zeros((len(texts), width), dtype=np.float32)
    vectors: FloatArray = np.zeros((len(texts), 0), dtype=np.float32)
    if not texts:
        return logits, vectors
    rows = [InputRow(t) for t in texts]
    encodings = encode_rows(classifier.tokenizer, rows)
    for batch in bucket_by_length(encodings, lambda e: len(e.ids), classifier.max_batch, 8192):
        feeds = pad_batch([encodings[i] for i in batch], [rows[i] for i in batch])
        (hidden,) = classifier.session.run(feeds, [HIDDEN])
        hidden = np.asarray(hidden, dtype=np.float32)
        logits[batch] = classifier.head(pool(hidden, feeds, classifier.task.pooling))
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        mean = unit((hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0))
        if vectors.shape[1] == 0:
            vectors = np.zeros((len(texts), mean.shape[1]), dtype=np.float32)
        vectors[batch] = mean
    return logits, vectors


def build_index(extractor: ToxicityExtractor, notes: Iterable[ToxicityNote]) -> tuple[RetrievalIndex, int]:
    """Index every sentence window of the labelled notes; returns the index and how many notes were unusable."""
    layout = extractor.layout
    texts: list[str] = []
    labels: list[list[int]] = []
    skipped = 0
    for note in notes:
        windows = note_windows(note.text, extractor.count, extractor.window_tokens)
        rows = window_labels(note, layout, windows)
        if rows is None:
            skipped += 1
            continue
        texts += [note.text[a:b] for a, b in windows]
        labels += rows
    _, vectors = forward(extractor, texts)
    table = np.asarray(labels, dtype=np.int64).reshape(len(labels), 2 * len(layout.symptoms))
    n = len(layout.symptoms)
    return RetrievalIndex(layout.symptoms, vectors, table[:, :n], table[:, n:]), skipped


@dataclass(frozen=True)
class WindowParts:
    """Model distributions ``[windows, symptoms, classes]`` and the neighbours' votes on status and grade."""

    model_status: FloatArray
    model_grade: FloatArray
    status_vote: Vote
    grade_vote: Vote

    def blend(self, weight: float) -> FloatArray:
        """Rows in the head's layout whose softmax is the blended distribution (log-probabilities)."""
        status = blend(self.model_status, self.status_vote, weight)
        grade = blend(self.model_grade, self.grade_vote, weight)
        count = len(status)
        logs = [np.log(np.maximum(status, 1e-9)).reshape(count, -1), np.log(np.maximum(grade, 1e-9)).reshape(count, -1)]
        out: FloatArray = np.concatenate(logs, axis=1).astype(np.float32)
        return out


class RetrievalToxicityExtractor:
    """The toxicity extractor with a kNN vote over a labelled index blended into each sentence's output."""

    def __init__(
        self, base: ToxicityExtractor, index: RetrievalIndex, weight: float, k: int = 8, tau: float = 0.05
    ) -> None:
        if index.symptoms != base.symptoms:
            raise DataFormatError("OV-2123", "the retrieval index was built for another symptom list")
        self.base = base
        self.index = index
        self.weight = weight
        self.k = k
        self.tau = tau

    @property
    def symptoms(self) -> tuple[str, ...]:
        return self.base.symptoms

    def parts(self, texts: Sequence[str]) -> WindowParts:
        layout = self.base.layout
        n, statuses, grades = len(layout.symptoms), len(STATUSES), len(GRADE_CLASSES)
        logits, vectors = forward(self.base, texts)
        model_status = softmax(logits[:, : layout.grade_offset].reshape(len(texts), n, statuses))
        model_grade = softmax(logits[:, layout.grade_offset :].reshape(len(texts), n, grades))
        index = self.index
        return WindowParts(
            model_status,
            model_grade,
            vote(vectors, index.vectors, index.status, statuses, self.k, self.tau),
            vote(vectors, index.vectors, index.grade, grades, self.k, self.tau),
        )

    def logits(self, texts: Sequence[str]) -> FloatArray:
        return self.parts(texts).blend(self.weight)

    def predict(self, batch: Sequence[str]) -> list[list[ToxicityFinding]]:
        return predict_notes(batch, self.logits, self.base.count, self.base.window_tokens, self.base.layout)

    def pipe(self, stream: Iterable[str], batch_size: int = 16) -> Iterator[list[ToxicityFinding]]:
        return pipe_batches(self.predict, stream, batch_size)


def note_pieces(extractor: ToxicityExtractor, texts: Sequence[str]) -> list[str]:
    """The window texts ``predict_notes`` will ask for, in its order (to compute their parts once)."""
    pieces: list[str] = []
    for text in texts:
        pieces += [text[a:b] for a, b in note_windows(text, extractor.count, extractor.window_tokens)]
    return pieces


def predict_blended(
    extractor: RetrievalToxicityExtractor, texts: Sequence[str], parts: WindowParts, weight: float
) -> list[list[ToxicityFinding]]:
    """Predictions at ``weight`` from precomputed parts (calibration tries many weights on one ONNX pass)."""
    rows = parts.blend(weight)
    base = extractor.base
    return predict_notes(texts, lambda _pieces: rows, base.count, base.window_tokens, base.layout)
