"""P(yes) for candidate drugs on the ONNX runtime, with the patient prefix encoded once.

The exported decoder (optimum ``text-generation-with-past``) takes ``input_ids``, ``attention_mask`` (past +
new length), ``position_ids`` and ``past_key_values.{i}.key/.value`` shaped [batch, kv_heads, past, head_dim],
and returns ``logits`` plus ``present.{i}.key/.value``. Shared-prefix scoring runs the prefix once with an
empty past, tiles the present keys/values to the candidate batch, and feeds the right-padded suffixes with
their positions continuing after the prefix; each candidate's score is read at its last real token.
numpy only: no torch at run time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.errors import ModelLoadError
from models.recommender.prompt import PatientSummary, PromptFormat
from models.recommender.tokens import TextEncoder, encode_prompt
from models.records import MedicationScore
from models.runtime import LoadedSession

_PAST = re.compile(r"^past_key_values\.(\d+)\.key$")
_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def p_yes(logits: npt.NDArray[Any], yes_id: int, no_id: int) -> npt.NDArray[np.float64]:
    """Softmax over the two answer logits: sigmoid(logit_yes - logit_no), in float64."""
    margin = logits[..., yes_id].astype(np.float64) - logits[..., no_id].astype(np.float64)
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-margin))
    return out


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-padded ids and their 0/1 mask."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class OnnxYesNoScorer:
    """Scores token-id prompts on a causal-LM ONNX session; knows nothing of patients or drugs."""

    def __init__(self, loaded: LoadedSession, yes_id: int, no_id: int, pad_id: int, max_batch: int = 16) -> None:
        self._loaded = loaded
        self._yes, self._no, self._pad = yes_id, no_id, pad_id
        self._max_batch = max(1, max_batch)
        inputs = {i.name: i for i in loaded.session.get_inputs()}
        layers = sorted(int(m.group(1)) for name in inputs if (m := _PAST.match(name)))
        if not layers or "position_ids" not in inputs:
            raise ModelLoadError(
                "OV-2015",
                f"{loaded.path} is not a causal LM exported with past key values (inputs: {sorted(inputs)}); "
                "export it with task text-generation-with-past",
            )
        self._layers = len(layers)
        first = inputs["past_key_values.0.key"]
        kv_heads, head_dim = first.shape[1], first.shape[3]
        if not isinstance(kv_heads, int) or not isinstance(head_dim, int):
            raise ModelLoadError("OV-2015", f"{loaded.path}: past key shape {first.shape} has no fixed heads/dims")
        self._kv_heads, self._head_dim = kv_heads, head_dim
        self._dtype = _ORT_FLOAT.get(first.type, np.float32)

    @property
    def provider(self) -> str:
        return self._loaded.provider

    def _empty_past(self, batch: int) -> dict[str, npt.NDArray[Any]]:
        shape = (batch, self._kv_heads, 0, self._head_dim)
        empty = np.zeros(shape, dtype=self._dtype)
        feeds: dict[str, npt.NDArray[Any]] = {}
        for i in range(self._layers):
            feeds[f"past_key_values.{i}.key"] = empty
            feeds[f"past_key_values.{i}.value"] = empty
        return feeds

    def _run(self, feeds: dict[str, npt.NDArray[Any]], with_present: bool) -> tuple[Any, list[Any]]:
        names = ["logits"]
        if with_present:
            for i in range(self._layers):
                names += [f"present.{i}.key", f"present.{i}.value"]
        out = self._loaded.session.run(names, feeds)
        return out[0], out[1:]

    def score_full(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]]) -> npt.NDArray[np.float64]:
        """One full forward pass per candidate over prefix + suffix (what the cache is checked against)."""
        scores = np.empty(len(suffixes), dtype=np.float64)
        for i, suffix in enumerate(suffixes):
            ids = np.asarray([list(prefix) + list(suffix)], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None, :],
                **self._empty_past(1),
            }
            logits, _ = self._run(feeds, with_present=False)
            scores[i] = p_yes(logits[0, -1], self._yes, self._no)
        return scores

    def score_cached(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]]) -> npt.NDArray[np.float64]:
        """Encode the prefix once, then score the suffixes in batches over its tiled keys and values."""
        if not suffixes:
            return np.empty(0, dtype=np.float64)
        if any(len(s) == 0 for s in suffixes):
            raise ValueError("every suffix needs at least one token")
        plen = len(prefix)
        ids = np.asarray([list(prefix)], dtype=np.int64)
        _, present = self._run(
            {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "position_ids": np.arange(plen, dtype=np.int64)[None, :],
                **self._empty_past(1),
            },
            with_present=True,
        )
        scores = np.empty(len(suffixes), dtype=np.float64)
        for start in range(0, len(suffixes), self._max_batch):
            chunk = suffixes[start : start + self._max_batch]
            batch = len(chunk)
            sids, smask = pad_right(chunk, self._pad)
            width = sids.shape[1]
            feeds: dict[str, npt.NDArray[Any]] = {
                "input_ids": sids,
                "attention_mask": np.concatenate([np.ones((batch, plen), dtype=np.int64), smask], axis=1),
                # Pads sit after every real token, so causal attention keeps them out of the real positions.
                "position_ids": np.broadcast_to(plen + np.arange(width, dtype=np.int64), (batch, width)).copy(),
            }
            for i in range(self._layers):
                for j, kind in enumerate(("key", "value")):
                    feeds[f"past_key_values.{i}.{kind}"] = np.repeat(present[2 * i + j], batch, axis=0)
            logits, _ = self._run(feeds, with_present=False)
            last = smask.sum(axis=1) - 1
            scores[start : start + batch] = p_yes(logits[np.arange(batch), last], self._yes, self._no)
        return scores


class MedicationRecommender:
    """LAMO scoring of candidate drugs for one patient: ``score`` is pure given the session."""

    def __init__(
        self,
        scorer: OnnxYesNoScorer,
        tokenizer: TextEncoder,
        fmt: PromptFormat,
        threshold: float,
        name: str = "recommender.v1",
        warning_threshold: float | None = None,
    ) -> None:
        self._scorer = scorer
        self._tokenizer = tokenizer
        self._fmt = fmt
        self.threshold = threshold
        self.warning_threshold = threshold if warning_threshold is None else warning_threshold
        self.name = name

    @property
    def provider(self) -> str:
        return self._scorer.provider

    def prompt_ids(self, patient: PatientSummary, candidates: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        return encode_prompt(self._tokenizer, self._fmt, patient, candidates)

    def score(self, patient: PatientSummary, candidates: Sequence[str], cached: bool = True) -> list[MedicationScore]:
        """P(yes) per candidate, in candidate order; ``cached=False`` runs one full pass per candidate."""
        if not candidates:
            return []
        prefix, suffixes = self.prompt_ids(patient, candidates)
        probs = self._scorer.score_cached(prefix, suffixes) if cached else self._scorer.score_full(prefix, suffixes)
        return [MedicationScore(drug=c, p_yes=float(p)) for c, p in zip(candidates, probs, strict=True)]

    def recommend(self, patient: PatientSummary, candidates: Sequence[str]) -> list[str]:
        """The candidates the model answers yes to (P(yes) >= the calibrated threshold)."""
        return [s.drug for s in self.score(patient, candidates) if s.p_yes >= self.threshold]
