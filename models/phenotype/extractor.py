"""``phenotype-extractor.v1``: primary site, histology, diagnosis, TNM, stage group, grade, size, laterality
and biomarkers (ER, PR, HER2, PD-L1, EGFR, ALK, KRAS) of a note, each with its evidence span.

Pipeline (numpy, tokenizers and onnxruntime only): sentences (offsets kept) -> BIO tagging with the
fine-tuned MiniLM in length buckets -> each mention normalised by ``models.phenotype.normalise`` -> per
field the most confident mention that normalises. The diagnosis falls back to the site's label and the
laterality to the side a site names ("RUL").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.encoder_infer import (
    EntitySpan,
    TokenClassifierRunner,
    card_decoding,
    decode_bio,
    open_token_classifier,
    read_labels,
)
from models.errors import ModelLoadError
from models.phenotype.labels import ENTITY_TYPES, FIELD_TYPES
from models.phenotype.normalise import MARKER_TYPES, diagnosis_from, implied_laterality, marker_kind, normalise
from models.phenotype.normalise import site as site_of
from models.phenotype.records import Phenotype, PhenotypeField
from models.records import pipe_batches
from models.registry import Registry, RuntimeConfig
from models.runtime import window_spans

NAME = "phenotype-extractor.v1"
_FIELD_OF = {kind: name for name, kind in FIELD_TYPES.items()}


@dataclass(frozen=True)
class PhenotypeConfig:
    min_confidence: float = 0.0
    max_batch: int = 32
    max_tokens: int = 4096


def fields_from_mentions(text: str, mentions: Sequence[EntitySpan], min_confidence: float = 0.0) -> Phenotype:
    """Pure: tagged mentions of one note -> its phenotype (most confident normalisable mention per field)."""
    best: dict[str, PhenotypeField] = {}
    for mention in mentions:
        if mention.confidence < min_confidence or mention.kind not in _FIELD_OF:
            continue
        start = _negation_start(text, mention.start)
        surface = text[start : mention.end]
        kind = (marker_kind(surface) or mention.kind) if mention.kind in MARKER_TYPES else mention.kind
        value = normalise(kind, surface)
        if value is None:
            continue
        name = _FIELD_OF[kind]
        candidate = PhenotypeField(name, value, surface, (start, mention.end), round(mention.confidence, 4))
        if name not in best or candidate.confidence > best[name].confidence:
            best[name] = candidate
    if "site" not in best:
        # "rectal adenocarcinoma", "NSCLC": a diagnosis or histology mention that names the organ
        for name in ("diagnosis", "histology"):
            named = best.get(name)
            organ = site_of(named.text) if named else None
            if named is not None and organ is not None:
                best["site"] = PhenotypeField("site", organ, named.text, named.span, named.confidence, True)
                break
    site = best.get("site")
    if site is not None and "laterality" not in best:
        side = implied_laterality(site.text)
        if side is not None:
            best["laterality"] = PhenotypeField("laterality", side, site.text, site.span, site.confidence, True)
    if "diagnosis" not in best and site is not None:
        histology = best.get("histology")
        label = diagnosis_from(site.value, histology.value if histology else None)
        if label is not None:
            best["diagnosis"] = PhenotypeField("diagnosis", label, site.text, site.span, site.confidence, True)
    return Phenotype(tuple(best[name] for name in FIELD_TYPES if name in best))


_NEGATION_BEFORE = re.compile(r"(?i)\b(?:no|negative for|without)\s+$")


def _negation_start(text: str, start: int) -> int:
    """Where a mention starts once a negation cue right before it ("no EGFR mutation") is taken in.

    The tagger sometimes leaves the cue outside the span (or tags it alone); the value depends on it.
    """
    cue = _NEGATION_BEFORE.search(text, max(0, start - 16), start)
    return cue.start() if cue else start


class PhenotypeExtractor:
    """``predict(notes) -> list[Phenotype]`` in input order."""

    name = NAME

    def __init__(self, runner: TokenClassifierRunner, labels: Sequence[str], config: PhenotypeConfig) -> None:
        missing = {f"B-{kind}" for kind in ENTITY_TYPES} - set(labels)
        if missing:
            raise ModelLoadError(
                "OV-2120",
                f"the phenotype model's labels lack {sorted(missing)}; train it with `oncovigil train phenotype`",
            )
        self.runner = runner
        self.labels = list(labels)
        self.config = config

    @classmethod
    def load(
        cls,
        model_dir: Path,
        runtime: RuntimeConfig | None = None,
        config: PhenotypeConfig | None = None,
        verify: bool = True,
    ) -> PhenotypeExtractor:
        """Open a model directory; refuses one whose files do not match its model card."""
        runtime = runtime or RuntimeConfig()
        decoding = card_decoding(model_dir, verify)
        if config is None:
            config = PhenotypeConfig(
                min_confidence=float(decoding.get("min_confidence", 0.0)), max_batch=runtime.max_batch
            )
        runner = open_token_classifier(model_dir, runtime, config.max_batch, config.max_tokens)
        return cls(runner, read_labels(model_dir), config)

    @property
    def provider(self) -> str:
        return self.runner.session.provider

    def tag(self, batch: Sequence[str]) -> list[list[EntitySpan]]:
        """Typed mentions per note (note offsets), before normalisation."""
        window = self.runner.tokenizer.max_len - 2
        segments: list[tuple[int, int, int]] = []
        for note, text in enumerate(batch):
            for start, end in window_spans(text, self.runner.tokenizer.count, window, pack=False):
                segments.append((note, start, end))
        texts = [batch[note][start:end] for note, start, end in segments]
        result: list[list[EntitySpan]] = [[] for _ in batch]
        for (note, start, _end), text, output in zip(segments, texts, self.runner.run(texts), strict=True):
            for span in decode_bio(text, output, self.labels):
                result[note].append(EntitySpan(span.start + start, span.end + start, span.kind, span.confidence))
        return result

    def predict(self, batch: Sequence[str]) -> list[Phenotype]:
        return [
            fields_from_mentions(text, mentions, self.config.min_confidence)
            for text, mentions in zip(batch, self.tag(batch), strict=True)
        ]

    def pipe(self, stream: Iterable[str], batch_size: int = 16) -> Iterator[Phenotype]:
        return pipe_batches(self.predict, stream, batch_size)


def _factory(model_dir: Path, runtime: RuntimeConfig) -> PhenotypeExtractor:
    return PhenotypeExtractor.load(model_dir, runtime, verify=not runtime.extra.get("unverified", False))


def register(registry: Registry) -> None:
    registry.register(NAME, _factory)
