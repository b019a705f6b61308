"""The vote of labelled neighbours that retrieval blends into a compact extractor's output (numpy only).

The ``k`` most cosine-similar index vectors vote with weights ``softmax(similarity / tau)``; a label of -1
abstains (a toxicity window states no grade), and the votes of each label column are renormalised over the
neighbours that did vote. Blending is ``(1 - w) * p_model + w * p_knn`` where anyone voted, the model alone
elsewhere; ``w`` is calibrated by the caller on held-out labelled examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.encoder_infer import softmax

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def unit(vectors: FloatArray) -> FloatArray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    out: FloatArray = (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)).astype(np.float32)
    return out


@dataclass(frozen=True)
class Vote:
    """Per query and label column: class distribution ``[queries, columns, classes]`` and voting mass."""

    probabilities: FloatArray
    mass: FloatArray  # [queries, columns]; 0 where every neighbour abstained

    @property
    def voted(self) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = self.mass > 0
        return out


def vote(
    queries: FloatArray, index: FloatArray, labels: IntArray, classes: int, k: int, tau: float
) -> Vote:
    """The neighbours' vote; ``labels`` is ``[index rows, columns]`` of class ids or -1 (abstain)."""
    columns = labels.shape[1]
    probabilities = np.zeros((len(queries), columns, classes), dtype=np.float32)
    mass = np.zeros((len(queries), columns), dtype=np.float32)
    if not len(index) or not len(queries):
        return Vote(probabilities, mass)
    k = min(k, len(index))
    similarity = queries @ index.T
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = softmax((np.take_along_axis(similarity, top, axis=1) / tau).astype(np.float32))  # [queries, k]
    neighbours = labels[top]  # [queries, k, columns]
    mass = (weights[..., None] * (neighbours >= 0)).sum(axis=1).astype(np.float32)
    for c in range(classes):
        share = (weights[..., None] * (neighbours == c)).sum(axis=1)
        probabilities[:, :, c] = np.where(mass > 0, share / np.maximum(mass, 1e-9), 0.0)
    return Vote(probabilities, mass)


def blend(model: FloatArray, neighbours: Vote, weight: float) -> FloatArray:
    """``(1 - weight) * model + weight * vote`` where the neighbours voted; ``model`` is ``[q, columns, classes]``."""
    mixed = (1 - weight) * model + weight * neighbours.probabilities
    out: FloatArray = np.where(neighbours.voted[..., None], mixed, model).astype(np.float32)
    return out
