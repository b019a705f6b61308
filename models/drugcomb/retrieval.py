"""Retrieval for the drug-combination extractor: labelled candidate combinations, compared by pooled vectors.

Every candidate subset of a labelled sentence (the same enumeration as inference) is embedded with the
extractor's own encoder: the head's input features (CLS, sentence mean, the candidate's drugs, the other
drugs; L2-normalised), labelled with its gold class or NO_COMB. At inference the ``k`` nearest labelled
candidates vote on the class (``models.knn``) and the vote is blended into the model's probabilities with a
weight calibrated on held-out labelled sentences. Adding labelled sentences changes predictions without
retraining. numpy and onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.drugcomb.candidates import CLASS_LABELS, NO_COMB
from models.drugcomb.data import DrugCombDoc
from models.drugcomb.extractor import DrugCombExtractor, candidate_inputs
from models.encoder_infer import softmax
from models.errors import DataFormatError
from models.knn import Vote, blend, unit, vote
from models.model_files import REFINE, load_npz, rows_agree

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
INDEX_FILE = "retrieval_index.npz"


@dataclass(frozen=True)
class CandidateIndex:
    """Unit vectors of labelled candidates and their class ids (positions in ``CLASS_LABELS``)."""

    vectors: FloatArray
    labels: IntArray

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def add(self, other: CandidateIndex) -> CandidateIndex:
        if len(self) and len(other) and other.vectors.shape[1] != self.vectors.shape[1]:
            raise DataFormatError("OV-2125", "the two drugcomb retrieval indexes hold vectors of different sizes")
        if not len(self):
            return other
        vectors = np.concatenate([self.vectors, other.vectors])
        return CandidateIndex(vectors, np.concatenate([self.labels, other.labels]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        classes = np.array(",".join(CLASS_LABELS))
        np.savez_compressed(path, vectors=self.vectors, labels=self.labels, classes=classes)

    @classmethod
    def load(cls, path: Path) -> CandidateIndex:
        if not path.is_file():
            raise DataFormatError("OV-2124", f"{path} is not a retrieval index; build one with `oncovigil refine`")
        data = load_npz(path, "OV-2124", REFINE, DataFormatError, ("classes", "vectors", "labels"))
        if str(data["classes"]) != ",".join(CLASS_LABELS):
            raise DataFormatError("OV-2125", f"{path} was built for other drugcomb classes")
        rows_agree(data, path, "OV-2124", REFINE, DataFormatError)
        return cls(data["vectors"].astype(np.float32), data["labels"].astype(np.int64))


def gold_classes(doc: DrugCombDoc, candidates: Sequence[tuple[int, ...]]) -> list[int]:
    """The class id of each candidate: its gold relation's label, else NO_COMB."""
    position = {span.span_id: i for i, span in enumerate(doc.spans)}
    gold = {tuple(sorted(position[i] for i in r.span_ids if i in position)): r.label for r in doc.relations}
    return [CLASS_LABELS.index(gold.get(tuple(sorted(c)), NO_COMB)) for c in candidates]


def build_index(extractor: DrugCombExtractor, docs: Iterable[DrugCombDoc]) -> CandidateIndex:
    """Index every candidate of the labelled sentences (a sentence with under two drugs has none)."""
    rows, labels = [], []
    for doc in docs:
        candidates, inputs = candidate_inputs(doc, extractor.config.candidates)
        rows += inputs
        labels += gold_classes(doc, candidates)
    _, features = extractor.classifier.logits_and_features(rows)
    return CandidateIndex(unit(features), np.asarray(labels, dtype=np.int64))


@dataclass(frozen=True)
class CandidateParts:
    """Per sentence, its candidates; for all candidates in order, model probabilities and the neighbours' vote."""

    candidates: list[list[tuple[int, ...]]]
    model: FloatArray  # [candidates, classes]
    neighbours: Vote  # one label column

    def probabilities(self, weight: float) -> list[tuple[list[tuple[int, ...]], np.ndarray]]:
        mixed = blend(self.model[:, None, :], self.neighbours, weight)[:, 0, :]
        out: list[tuple[list[tuple[int, ...]], np.ndarray]] = []
        at = 0
        for candidates in self.candidates:
            out.append((candidates, mixed[at : at + len(candidates)]))
            at += len(candidates)
        return out


class RetrievalDrugCombExtractor(DrugCombExtractor):
    """The extractor with the labelled candidates' vote blended into each candidate's class probabilities."""

    def __init__(self, base: DrugCombExtractor, index: CandidateIndex, weight: float, k: int = 8, tau: float = 0.05):
        super().__init__(base.classifier, base.lexicon, base.config)
        self.base = base
        self.index = index
        self.weight = weight
        self.k = k
        self.tau = tau

    def parts(self, docs: Sequence[DrugCombDoc]) -> CandidateParts:
        per_doc: list[list[tuple[int, ...]]] = []
        rows = []
        for doc in docs:
            candidates, inputs = candidate_inputs(doc, self.config.candidates)
            per_doc.append(candidates)
            rows += inputs
        logits, features = self.classifier.logits_and_features(rows)
        model = softmax(logits) if rows else np.zeros((0, len(CLASS_LABELS)), dtype=np.float32)
        labels = self.index.labels[:, None]
        neighbours = vote(unit(features), self.index.vectors, labels, len(CLASS_LABELS), self.k, self.tau)
        return CandidateParts(per_doc, model, neighbours)

    def probabilities(self, docs: Sequence[DrugCombDoc]) -> list[tuple[list[tuple[int, ...]], np.ndarray]]:
        return self.parts(docs).probabilities(self.weight)
