"""``drugcomb-extractor.v1``: which drugs of a sentence were combined, and whether it worked.

For every sentence with two or more drug mentions, each candidate subset is marked ``<< drug >>`` and
classified NO_COMB / POS / COMB / NEG by the pooled encoder classifier (``pooled``: CLS, mean and the
mean of the candidate's drug tokens feed an MLP); ``decode.decide`` keeps the confident, non-nested ones.
Runtime: numpy, tokenizers and onnxruntime only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from models.drugcomb.candidates import CandidateConfig, context_of, enumerate_candidates, mark_with_focus
from models.drugcomb.data import DrugCombDoc, DrugSpan
from models.drugcomb.decode import CandidateDecision, Strategy, decide
from models.drugcomb.lexicon import DRUGS_FILE, DrugLexicon
from models.drugcomb.pooled import TASK_FILE, InputRow, PooledClassifier, load_pooled_classifier
from models.encoder_infer import softmax
from models.model_files import invalid
from models.records import CombinationLabel, DrugCombination, pipe_batches
from models.registry import Registry, RuntimeConfig
from models.runtime import split_sentences_with_offsets

REGISTRY_NAME = "drugcomb-extractor.v1"
_LABELS: dict[str, CombinationLabel] = {"POS": "POS", "COMB": "COMB", "NEG": "NEG"}


@dataclass(frozen=True)
class DecodeConfig:
    """How candidates become relations; stored in ``encoder_task.json`` under ``drugcomb``."""

    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    max_length: int = 192
    threshold: float = 0.5
    strategy: Strategy = "non_nested"

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_size": self.candidates.max_size,
            "max_candidates": self.candidates.max_candidates,
            "context_chars": self.candidates.context_chars,
            "max_length": self.max_length,
            "threshold": self.threshold,
            "strategy": self.strategy,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DecodeConfig:
        return cls(
            candidates=CandidateConfig(
                max_size=int(raw.get("max_size", 4)),
                max_candidates=int(raw.get("max_candidates", 96)),
                context_chars=int(raw.get("context_chars", 0)),
            ),
            max_length=int(raw.get("max_length", 192)),
            threshold=float(raw.get("threshold", 0.5)),
            strategy=raw.get("strategy", "non_nested"),
        )


def candidate_inputs(doc: DrugCombDoc, config: CandidateConfig) -> tuple[list[tuple[int, ...]], list[InputRow]]:
    """The candidate subsets of one sentence and the classifier input of each."""
    candidates = enumerate_candidates(len(doc.spans), config.max_size, config.max_candidates)
    context = context_of(doc, config.context_chars)
    rows = []
    for members in candidates:
        text, focus, other = mark_with_focus(doc.sentence, doc.spans, members)
        rows.append(InputRow(text, context, focus, other))
    return candidates, rows


class DrugCombExtractor:
    """Classifies drug subsets of sentences; ``predict`` finds the drugs itself, ``classify`` takes gold spans."""

    def __init__(self, classifier: PooledClassifier, lexicon: DrugLexicon, config: DecodeConfig) -> None:
        self.classifier = classifier
        self.lexicon = lexicon
        self.config = config

    def probabilities(self, docs: Sequence[DrugCombDoc]) -> list[tuple[list[tuple[int, ...]], np.ndarray]]:
        """Per sentence: its candidates and their class probabilities (NO_COMB, POS, COMB, NEG)."""
        per_doc: list[list[tuple[int, ...]]] = []
        rows: list[InputRow] = []
        for doc in docs:
            candidates, inputs = candidate_inputs(doc, self.config.candidates)
            per_doc.append(candidates)
            rows += inputs
        probs = softmax(self.classifier.logits(rows)) if rows else np.zeros((0, 4), dtype=np.float32)
        out: list[tuple[list[tuple[int, ...]], np.ndarray]] = []
        at = 0
        for candidates in per_doc:
            out.append((candidates, probs[at : at + len(candidates)]))
            at += len(candidates)
        return out

    def classify(self, docs: Sequence[DrugCombDoc]) -> list[list[CandidateDecision]]:
        """Relations per sentence, members as positions into each doc's drug spans."""
        return [
            decide(candidates, probs, self.config.threshold, self.config.strategy)
            for candidates, probs in self.probabilities(docs)
        ]

    def predict(self, batch: Sequence[str]) -> list[list[DrugCombination]]:
        """Combinations in each text; sentence spans are offsets into that text."""
        docs: list[DrugCombDoc] = []
        owners: list[tuple[int, int, list[str]]] = []
        for index, text in enumerate(batch):
            for start, end in split_sentences_with_offsets(text):
                start = _after_heading(text, start, end)
                sentence = text[start:end]
                # Repeated mentions stay separate spans, as in DrugComb ("A plus B beat A alone").
                mentions = self.lexicon.find(sentence)
                if len({m.name for m in mentions}) < 2:
                    continue
                spans = tuple(DrugSpan(i, m.name, m.start, m.end) for i, m in enumerate(mentions))
                docs.append(DrugCombDoc(f"{index}:{start}", sentence, spans, (), text))
                owners.append((index, start, [m.name for m in mentions]))
        out: list[list[DrugCombination]] = [[] for _ in batch]
        for (index, start, names), doc, decisions in zip(owners, docs, self.classify(docs), strict=True):
            seen: set[tuple[str, ...]] = set()
            for decision in decisions:
                drugs = tuple(sorted({names[i] for i in decision.members}))
                if len(drugs) < 2 or drugs in seen:  # one drug with itself, or a set already reported
                    continue
                seen.add(drugs)
                out[index].append(
                    DrugCombination(
                        drugs=drugs,
                        label=_LABELS[decision.label],
                        confidence=round(decision.confidence, 6),
                        sentence_span=(start, start + len(doc.sentence)),
                    )
                )
        return out

    def pipe(self, stream: Iterable[str], batch_size: int = 32) -> Iterator[list[DrugCombination]]:
        return pipe_batches(self.predict, stream, batch_size)


_HEADING = re.compile(r"[A-Z][A-Za-z /&-]{0,40}:\s+")


def _after_heading(text: str, start: int, end: int) -> int:
    """Skip a section label ("Plan: ", "Impression and plan: ") that opens a sentence: it is not part of it."""
    match = _HEADING.match(text, start, end)
    return match.end() if match and match.end() < end else start


def load_drugcomb_extractor(
    model_dir: Path, config: RuntimeConfig | None = None, extra_drugs: Mapping[str, str] | None = None
) -> DrugCombExtractor:
    """Verify the directory, open the session the providers allow, and build the extractor.

    ``extra_drugs`` (or ``config.extra["drug_names"]``) maps more surface names (brands) to drug names.
    """
    config = config or RuntimeConfig()
    classifier = load_pooled_classifier(
        model_dir, config.providers, config.threads, config.allow_int8, config.require, config.max_batch, config.spin
    )
    decode_config = _decode_config(model_dir, classifier.task.extra.get("drugcomb", {}))
    extra = dict(extra_drugs or {})
    extra.update({str(k): str(v) for k, v in config.extra.get("drug_names", {}).items()})
    return DrugCombExtractor(classifier, DrugLexicon.from_file(model_dir / DRUGS_FILE, extra), decode_config)


def _decode_config(model_dir: Path, raw: Any) -> DecodeConfig:
    """The decoding settings of ``pooled_task.json``, refused as a whole when any is malformed."""
    path = model_dir / TASK_FILE
    if not isinstance(raw, dict):
        raise invalid(path, "OV-2006", "has a drugcomb entry that is not an object")
    try:
        config = DecodeConfig.from_dict(raw)
    except (ValueError, TypeError, OverflowError) as exc:  # int() / float() of a value that is no number
        raise invalid(path, "OV-2006", f"has a malformed drugcomb setting ({exc})") from exc
    if config.strategy not in get_args(Strategy):
        raise invalid(path, "OV-2006", f"has drugcomb strategy {config.strategy!r}, not one of {get_args(Strategy)}")
    return config


def register(registry: Registry) -> None:
    registry.register(REGISTRY_NAME, load_drugcomb_extractor)
