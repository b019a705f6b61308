"""The three baselines the recommender must beat, fitted on the training split and saved as JSON.

- ``all``: recommend every candidate (score 1).
- ``top_k``: the ``k`` candidates most often prescribed in training, ``k`` the mean number of drugs
  prescribed per training visit (rounded).
- ``cooccurrence``: score(drug) = max over the patient's conditions of P(drug prescribed | condition) in
  training (the drug's overall rate for a condition never seen); threshold chosen on the training split
  by the same calibration as the model's.
Scores are dicts drug -> score so the same decision function and metrics apply to every method.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.model_files import invalid, load_json_object
from models.recommender.metrics import ScoredVisit, calibrate_threshold
from models.recommender.visits import TrainingVisit

BASELINES_FILE = "baselines.json"


def _cond(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Baselines:
    drug_counts: dict[str, int]
    k: int
    condition_counts: dict[str, int]
    pair_counts: dict[str, dict[str, int]]
    visits: int
    cooccurrence_threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)

    def all_scores(self, candidates: Sequence[str]) -> dict[str, float]:
        return dict.fromkeys(candidates, 1.0)

    def top_k_scores(self, candidates: Sequence[str]) -> dict[str, float]:
        ranked = sorted(candidates, key=lambda d: (-self.drug_counts.get(d, 0), d))
        chosen = set(ranked[: self.k])
        return {d: 1.0 if d in chosen else 0.0 for d in candidates}

    def cooccurrence_scores(self, conditions: Sequence[str], candidates: Sequence[str]) -> dict[str, float]:
        seen = [c for c in map(_cond, conditions) if self.condition_counts.get(c)]
        scores: dict[str, float] = {}
        for drug in candidates:
            if seen:
                scores[drug] = max(self.pair_counts.get(c, {}).get(drug, 0) / self.condition_counts[c] for c in seen)
            else:
                scores[drug] = self.drug_counts.get(drug, 0) / max(1, self.visits)
        return scores

    def to_json(self) -> dict[str, Any]:
        return {
            "drug_counts": self.drug_counts,
            "k": self.k,
            "condition_counts": self.condition_counts,
            "pair_counts": self.pair_counts,
            "visits": self.visits,
            "cooccurrence_threshold": self.cooccurrence_threshold,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baselines:
        return cls(
            drug_counts={str(k): int(v) for k, v in data["drug_counts"].items()},
            k=int(data["k"]),
            condition_counts={str(k): int(v) for k, v in data["condition_counts"].items()},
            pair_counts={str(c): {str(d): int(n) for d, n in m.items()} for c, m in data["pair_counts"].items()},
            visits=int(data["visits"]),
            cooccurrence_threshold=float(data["cooccurrence_threshold"]),
        )


def fit_baselines(train: Sequence[TrainingVisit], max_size_ratio: float = 1.2) -> Baselines:
    drug_counts: Counter[str] = Counter()
    condition_counts: Counter[str] = Counter()
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    for visit in train:
        drugs = set(visit.appropriate)
        drug_counts.update(drugs)
        for condition in {_cond(c) for c in visit.patient.conditions}:
            condition_counts[condition] += 1
            pairs[condition].update(drugs)
    sizes = [len(set(v.appropriate)) for v in train]
    k = max(1, round(sum(sizes) / len(sizes))) if sizes else 1
    fitted = Baselines(
        drug_counts=dict(drug_counts),
        k=k,
        condition_counts=dict(condition_counts),
        pair_counts={c: dict(m) for c, m in pairs.items()},
        visits=len(train),
    )
    scored = [
        ScoredVisit(
            scores=fitted.cooccurrence_scores(v.patient.conditions, v.universe),
            prescribed=frozenset(v.appropriate),
            overprescribed=frozenset(v.overprescribed),
        )
        for v in train
    ]
    threshold, _ = calibrate_threshold(scored, max_size_ratio)
    return Baselines(**{**fitted.__dict__, "cooccurrence_threshold": threshold})


def write_baselines(directory: Path, baselines: Baselines) -> Path:
    path = directory / BASELINES_FILE
    path.write_text(json.dumps(baselines.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_baselines(directory: Path) -> Baselines | None:
    path = directory / BASELINES_FILE
    if not path.is_file():
        return None
    data = load_json_object(path, "OV-2192")
    counts: list[Any] = [data.get("drug_counts"), data.get("condition_counts"), data.get("pair_counts")]
    if not all(isinstance(c, dict) for c in counts) or not all(isinstance(m, dict) for m in counts[2].values()):
        raise invalid(path, "OV-2192", "needs drug_counts, condition_counts and pair_counts objects")
    try:
        return Baselines.from_json(data)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # a missing field, a count that is no number
        raise invalid(path, "OV-2192", f"is not valid baselines ({type(exc).__name__}: {exc})") from exc
