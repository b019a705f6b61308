"""The ADE extractor: drug and adverse-event mentions, who caused what, negation, grade, CTCAE term.

Pipeline per note (numpy + onnxruntime only):
1. split into sentences (offsets kept); a sentence longer than the model window is cut on whitespace;
2. BIO-tag DRUG / AE tokens with the fine-tuned encoder, all sentences of the batch in length buckets;
3. pair every event with every drug of its sentence (ADE-Corpus-V2 pairs 98% of its positive sentences
   this way); an event in a sentence without a drug takes the drugs of the nearest previous sentence
   that has one, at most ``drug_lookback`` sentences back;
4. negation and grade from cue rules (``models.ade.cues``), CTCAE term from ``models.ade.ctcae``
   (term vectors from the untuned backbone, ``embedder.onnx``: tagging fine-tunes away similarity).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.ade.ctcae import TERMS_FILE, VECTORS_FILE, CtcaeIndex, CtcaeMatch, CtcaeTerm, FloatArray, parse_terms
from models.ade.cues import core_mention, is_negated, severity
from models.ade.decode import drop_bare_qualifiers, nest_drug_events, tidy
from models.encoder_export import EMBEDDER_FILE, EMBEDDER_TOKENIZER_FILE
from models.encoder_infer import (
    EncoderTokenizer,
    EntitySpan,
    TokenClassifierRunner,
    card_decoding,
    decode_bio,
    open_token_classifier,
    read_labels,
)
from models.errors import ModelLoadError
from models.model_files import invalid, load_npy, read_model_text
from models.records import AdeFinding, pipe_batches
from models.registry import RuntimeConfig
from models.runtime import CPU, load_session, split_sentences_with_offsets, window_spans

NAME = "ade-extractor.v1"
DRUG, AE = "DRUG", "AE"


@dataclass(frozen=True)
class AdeConfig:
    drug_lookback: int = 1
    min_confidence: float = 0.0
    min_entity_confidence: float = 0.0
    ctcae_threshold: float = 0.55
    max_batch: int = 32
    max_tokens: int = 4096


@dataclass(frozen=True)
class _Segment:
    note: int
    start: int
    end: int


class AdeExtractor:
    """``predict(notes) -> list[list[AdeFinding]]`` (one list per note, in input order)."""

    name = NAME

    def __init__(
        self,
        runner: TokenClassifierRunner,
        labels: Sequence[str],
        ctcae: CtcaeIndex | None,
        config: AdeConfig | None = None,
    ) -> None:
        missing = {f"B-{DRUG}", f"I-{DRUG}", f"B-{AE}", f"I-{AE}"} - set(labels)
        if missing:
            raise ModelLoadError(
                "OV-2081",
                f"the ADE model's labels lack {sorted(missing)}; a token classifier with "
                "O, B-DRUG, I-DRUG, B-AE, I-AE (config.json id2label) is needed",
            )
        self.runner = runner
        self.labels = list(labels)
        self.ctcae = ctcae
        self.config = config or AdeConfig()

    @classmethod
    def load(
        cls,
        model_dir: Path,
        runtime: RuntimeConfig | None = None,
        config: AdeConfig | None = None,
        ctcae_terms: Sequence[CtcaeTerm] | None = None,
        verify: bool = True,
    ) -> AdeExtractor:
        """Open a model directory; refuses one whose files do not match its model card.

        ``verify=False`` is for a user's own ONNX directory without a card; ``ctcae_terms`` then supplies
        the term list (terms are matched lexically, or by embedding when the model exposes hidden states).
        """
        runtime = runtime or RuntimeConfig()
        decoding = card_decoding(model_dir, verify)
        if config is None:
            # The threshold chosen on the dev split travels in the model card.
            threshold = float(decoding.get("min_entity_confidence", 0.0))
            config = AdeConfig(max_batch=runtime.max_batch, min_entity_confidence=threshold)
        runner = open_token_classifier(model_dir, runtime, config.max_batch, config.max_tokens)
        index: CtcaeIndex | None = None
        embed = None
        if (model_dir / EMBEDDER_FILE).is_file():
            embedder_session = load_session(model_dir / EMBEDDER_FILE, [CPU], runtime.threads, spin=runtime.spin)
            embedder_tokenizer = runner.tokenizer  # directories built before the embedder had its own tokenizer
            if (model_dir / EMBEDDER_TOKENIZER_FILE).is_file():
                embedder_tokenizer = EncoderTokenizer(model_dir / EMBEDDER_TOKENIZER_FILE, runner.tokenizer.max_len)
            embed = TokenClassifierRunner(
                embedder_session, embedder_tokenizer, config.max_batch, config.max_tokens
            ).embed
        if (model_dir / TERMS_FILE).is_file():
            terms = _read_own_terms(model_dir / TERMS_FILE)
            vectors_path = model_dir / VECTORS_FILE
            vectors = _read_term_vectors(vectors_path) if vectors_path.is_file() and embed else None
            index = CtcaeIndex(terms, vectors, embed, config.ctcae_threshold)
        elif ctcae_terms is not None:
            # A user's own directory: terms matched lexically (no embedder of ours to compare with).
            index = CtcaeIndex(ctcae_terms, None, None, config.ctcae_threshold)
        return cls(runner, read_labels(model_dir), index, config)

    @property
    def provider(self) -> str:
        return self.runner.session.provider

    # -- component contract --------------------------------------------------------------------

    def predict(self, batch: Sequence[str]) -> list[list[AdeFinding]]:
        segments = self._segments(batch)
        entities = self._tag(batch, segments)
        findings: list[list[AdeFinding]] = [[] for _ in batch]
        events_to_map: list[tuple[int, int, str]] = []  # (note, index in findings, event text)
        last_drugs: dict[int, tuple[int, list[EntitySpan]]] = {}  # note -> (segment number, drugs)
        for number, (segment, spans) in enumerate(zip(segments, entities, strict=True)):
            text = batch[segment.note]
            drugs = [s for s in spans if s.kind == DRUG]
            events = [s for s in spans if s.kind == AE]
            partners = drugs
            if not drugs and segment.note in last_drugs:
                seen_at, previous = last_drugs[segment.note]
                if number - seen_at <= self.config.drug_lookback:
                    partners = previous
            if drugs:
                last_drugs[segment.note] = (number, drugs)
            for event in events:
                for drug in partners:
                    finding = self._finding(text, segment, spans, drug, event)
                    if finding.confidence >= self.config.min_confidence:
                        events_to_map.append((segment.note, len(findings[segment.note]), finding.event))
                        findings[segment.note].append(finding)
        return self._with_ctcae(findings, events_to_map)

    def pipe(self, stream: Iterable[str], batch_size: int = 32) -> Iterator[list[AdeFinding]]:
        return pipe_batches(self.predict, stream, batch_size)

    def tag(self, batch: Sequence[str]) -> list[list[EntitySpan]]:
        """DRUG / AE spans per text (note offsets), before pairing."""
        segments = self._segments(batch)
        result: list[list[EntitySpan]] = [[] for _ in batch]
        for segment, spans in zip(segments, self._tag(batch, segments), strict=True):
            result[segment.note].extend(spans)
        return result

    # -- steps ---------------------------------------------------------------------------------

    def _segments(self, batch: Sequence[str]) -> list[_Segment]:
        window = self.runner.tokenizer.max_len - 2
        segments: list[_Segment] = []
        for note, text in enumerate(batch):
            for start, end in window_spans(text, self.runner.tokenizer.count, window, pack=False):
                segments.append(_Segment(note, start, end))
        return segments

    def _tag(self, batch: Sequence[str], segments: Sequence[_Segment]) -> list[list[EntitySpan]]:
        texts = [batch[s.note][s.start : s.end] for s in segments]
        outputs = self.runner.run(texts)
        tagged: list[list[EntitySpan]] = []
        for segment, text, output in zip(segments, texts, outputs, strict=True):
            spans = tidy(text, decode_bio(text, output, self.labels), self.config.min_entity_confidence)
            spans = nest_drug_events(text, drop_bare_qualifiers(text, spans, AE), DRUG, AE)
            tagged.append(
                [EntitySpan(s.start + segment.start, s.end + segment.start, s.kind, s.confidence) for s in spans]
            )
        return tagged

    def _finding(
        self, text: str, segment: _Segment, spans: Sequence[EntitySpan], drug: EntitySpan, event: EntitySpan
    ) -> AdeFinding:
        sentence = text[segment.start : segment.end]
        start, end = event.start - segment.start, event.end - segment.start
        left = max((s.end for s in spans if s.end <= event.start), default=segment.start) - segment.start
        right_edges = [s.start for s in spans if s.start >= event.end]
        right = min(right_edges) - segment.start if right_edges else None
        sev = severity(sentence, start, end, left, right)
        return AdeFinding(
            drug=text[drug.start : drug.end],
            drug_span=(drug.start, drug.end),
            event=text[event.start : event.end],
            event_span=(event.start, event.end),
            negated=is_negated(sentence, start, end),
            grade=sev.grade,
            severity_word=sev.severity_word,
            ctcae_term=None,
            meddra_code=None,
            confidence=round(min(drug.confidence, event.confidence), 4),
        )

    def _with_ctcae(
        self, findings: list[list[AdeFinding]], events: list[tuple[int, int, str]]
    ) -> list[list[AdeFinding]]:
        if self.ctcae is None or not events:
            return findings
        unique = sorted({e[2].lower() for e in events})
        # "Severe mucositis" is no term, "mucositis" is: the core is tried lexically before embeddings.
        found = self.ctcae.match(unique, [core_mention(m) for m in unique])
        matches: dict[str, CtcaeMatch | None] = dict(zip(unique, found, strict=True))
        for note, index, event in events:
            match = matches[event.lower()]
            if match is not None:
                old = findings[note][index]
                findings[note][index] = replace(old, ctcae_term=match.term, meddra_code=match.meddra_code)
        return findings


def _read_own_terms(path: Path) -> list[CtcaeTerm]:
    return parse_terms(read_model_text(path, "OV-2191"), lambda _code, problem: invalid(path, "OV-2191", problem))


def _read_term_vectors(path: Path) -> FloatArray:
    vectors = load_npy(path, "OV-2191")
    if vectors.ndim != 2 or vectors.dtype.kind not in "fiu":
        raise invalid(path, "OV-2191", f"holds a {vectors.dtype} array of shape {vectors.shape}, not term vectors")
    return vectors.astype(np.float32)


def split_note(text: str) -> list[tuple[int, int]]:
    """Sentence offsets the extractor pairs within (exposed for callers that group findings)."""
    return split_sentences_with_offsets(text)
