"""Choose the entity-confidence threshold on one half of the dev split (by PubMed id), report on the other.

The encoder runs once per sentence; each threshold only re-decodes the cached token probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from models.ade.corpus import AdeSentence, is_dev
from models.ade.extractor import AdeExtractor
from models.ade.metrics import corpus_metrics
from models.encoder_infer import TokenClassifierRunner, TokenOutput

GRID: tuple[float, ...] = (0.0, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


class _CachedRunner(TokenClassifierRunner):
    """The same session and tokenizer; token outputs remembered per text."""

    def __init__(self, inner: TokenClassifierRunner) -> None:
        super().__init__(inner.session, inner.tokenizer, inner.max_batch, inner.max_tokens)
        self._cache: dict[tuple[str, bool], TokenOutput] = {}

    def run(self, texts: Sequence[str], hidden: bool = False) -> list[TokenOutput]:
        missing = [t for t in dict.fromkeys(texts) if (t, hidden) not in self._cache]
        if missing:
            for text, output in zip(missing, super().run(missing, hidden), strict=True):
                self._cache[(text, hidden)] = output
        return [self._cache[(t, hidden)] for t in texts]


def halves(sentences: Sequence[AdeSentence]) -> tuple[list[AdeSentence], list[AdeSentence]]:
    """(tune, report): a fixed split of the dev sentences by PubMed id."""
    tune = [s for s in sentences if is_dev(s.pmid, 0.5, salt="oncovigil-ade-tune")]
    report = [s for s in sentences if not is_dev(s.pmid, 0.5, salt="oncovigil-ade-tune")]
    return tune, report


def tune_threshold(extractor: AdeExtractor, dev: Sequence[AdeSentence], grid: Sequence[float] = GRID) -> dict[str, Any]:
    """Best ``min_entity_confidence`` by pair F1 on the tune half; metrics on the report half and all of dev."""
    tune, report = halves(dev)
    cached = AdeExtractor(_CachedRunner(extractor.runner), extractor.labels, None, extractor.config)
    scores: dict[float, float] = {}
    for threshold in grid:
        cached.config = replace(extractor.config, min_entity_confidence=threshold)
        scores[threshold] = corpus_metrics(tune, cached.predict([s.text for s in tune]))["pair_f1"]
    best = max(grid, key=lambda t: (scores[t], -t))
    cached.config = replace(extractor.config, min_entity_confidence=best)
    return {
        "min_entity_confidence": best,
        "tune_pair_f1_by_threshold": {str(t): v for t, v in scores.items()},
        "tune_sentences": len(tune),
        "report_half": corpus_metrics(report, cached.predict([s.text for s in report])),
        "report_sentences": len(report),
    }
