"""Guarded per-drug summaries: generate, check every claim against the grouped record, publish or fall back.

Never publishes an unchecked generated sentence: a generated paragraph is published only when the
faithfulness guard passes (every event, number and grade it states is in the record, every serious event
is stated as serious); otherwise the deterministic narrative is published and the fallback is counted.
Without a built summariser model the deterministic narrative is used throughout.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds.errors import ConfigError
from cds.grouping import GroupedAdeRecord, to_drug_group, verbalise
from models import ModelError, RuntimeConfig, verify_dir
from models.summariser import DrugGroup, check_summary, narrate

log = logging.getLogger(__name__)

DETERMINISTIC = "oncovigil-verbaliser"
MODEL_DIR = "summaries"  # {models_dir}/summaries: the built summariser (task ``summaries``)


@dataclass(frozen=True)
class PublishedSummary:
    group: DrugGroup
    paragraph: str  # what the document opens with: checked generated text, or the deterministic narrative
    generated: bool
    model_name: str
    model_version: str
    rejected_because: tuple[str, ...] = ()

    def markdown(self, record: GroupedAdeRecord) -> str:
        """The paragraph, then the deterministic table and evidence (every figure straight from the record)."""
        table = verbalise(record)
        head, _, rest = table.partition("\n\n")
        return f"{head}\n\n{self.paragraph}\n\n{rest}"


@dataclass
class SummaryCounts:
    generated: int = 0
    guard_fallbacks: int = 0
    deterministic: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class GuardedSummariser:
    """Generator (optional) + guard + deterministic fallback; the only way summaries are written."""

    def __init__(self, generator: Any | None = None, vocabulary: Sequence[str] = (), model_version: str = "1") -> None:
        self._generator = generator  # models.summariser.Summariser, or None: deterministic only
        self._vocabulary = tuple(vocabulary)
        self._version = model_version
        self.counts = SummaryCounts()

    @property
    def generative(self) -> bool:
        return self._generator is not None

    def summarise(self, groups: Sequence[DrugGroup]) -> list[PublishedSummary]:
        if self._generator is None:
            self.counts.deterministic += len(groups)
            return [PublishedSummary(g, narrate(g), False, DETERMINISTIC, "1") for g in groups]
        texts = self._generator.summarise(groups)
        out = []
        for group, text in zip(groups, texts, strict=True):
            report = check_summary(text, group, self._vocabulary)
            if report.passed:
                self.counts.generated += 1
                out.append(PublishedSummary(group, text, True, self._generator.name, self._version))
                continue
            reasons = tuple(
                [f"hallucinated:{t}" for t in report.hallucinated]
                + [f"omitted_serious:{t}" for t in report.omitted_serious]
                + [f"numeric:{e}" for e in report.numeric_errors]
                + (["empty"] if report.empty else [])
            )
            self.counts.guard_fallbacks += 1
            for reason in reasons:
                kind = reason.split(":", 1)[0]
                self.counts.reasons[kind] = self.counts.reasons.get(kind, 0) + 1
            out.append(PublishedSummary(group, narrate(group), False, DETERMINISTIC, "1", reasons))
        return out


GROUP_KIND = "ade-group"  # state-store kind of a stored grouped record (not a per-note finding)


def grouped_record_row(record: GroupedAdeRecord, published: PublishedSummary) -> dict[str, Any]:
    """The state-store row of one grouped record: the typed record as JSON plus what was published for it."""
    return {
        "key": f"{GROUP_KIND}-{record.key}",
        "kind": GROUP_KIND,
        "patient_id": "*",  # a group spans patients; its record names none
        "note_id": "*",
        "drug_rxnorm": record.drug_rxnorm,
        "payload": {
            "record": published.group.to_json(),
            "paragraph": published.paragraph,
            "generated": published.generated,
            "markdown": published.markdown(record),
            "rejected_because": list(published.rejected_because),
        },
        "model": f"{published.model_name}|{published.model_version}",
    }


def read_vocabulary(model_dir: Path) -> list[str]:
    path = model_dir / "event_vocabulary.json"
    if not path.is_file():
        return []
    problem = ConfigError("OV-0154", f"{path} is not a JSON list of event names; rebuild the summariser model")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: also not UTF-8
        raise problem from exc
    if not isinstance(values, list):
        raise problem
    return [str(v) for v in values]


def build_guarded_summariser(models_dir: Path, runtime: RuntimeConfig) -> GuardedSummariser:
    """The guarded summariser over ``{models_dir}/summaries`` when it is built and intact, else deterministic."""
    from models.summariser.generator import load_summariser

    model_dir = models_dir / MODEL_DIR
    if not (model_dir / "model_card.json").is_file():
        log.info("no summariser model; summaries are deterministic", extra={"models_dir": str(models_dir)})
        return GuardedSummariser()
    try:
        card = verify_dir(model_dir)
        generator = load_summariser(model_dir, runtime.providers, runtime.threads)
        vocabulary = read_vocabulary(model_dir)
    except (ModelError, ConfigError) as exc:
        log.warning("summariser model unusable; summaries are deterministic", extra={"code": exc.code})
        return GuardedSummariser()
    return GuardedSummariser(generator, vocabulary, card.version)


def summarise_records(summariser: GuardedSummariser, records: Sequence[GroupedAdeRecord]) -> list[str]:
    """The published markdown of each grouped record, in order."""
    published = summariser.summarise([to_drug_group(r) for r in records])
    return [p.markdown(r) for p, r in zip(published, records, strict=True)]


def read_eval_file(path: Path) -> tuple[list[DrugGroup], list[str]]:
    from models.summariser.record import DrugGroup as Group

    groups, references = [], []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            "OV-0122", f"cannot read {path}: {exc.strerror}; pass a JSONL file of grouped records"
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            "OV-0122",
            f"{path}:{at}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); pass a UTF-8 JSONL file of grouped records",
        ) from exc
    # "\n" only: splitlines() also breaks at U+2028 and other separators a valid JSON string may hold raw
    lines = [line for line in text.split("\n") if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
            group = Group.from_json(data["record"])
        except (ValueError, KeyError, TypeError, RecursionError, ModelError) as exc:
            raise ConfigError(
                "OV-0122", f'{path}:{n} is not {{"record": <grouped record>, "reference": <text>}} ({exc})'
            ) from exc
        groups.append(group)
        references.append(str(data.get("reference") or narrate(group)))
    if not groups:
        raise ConfigError("OV-0122", f"{path} holds no records; write one with `oncovigil eval summaries` data tools")
    return groups, references


def _stage_figures(
    summariser: Any, groups: list[DrugGroup], references: list[str], vocabulary: list[str]
) -> dict[str, Any]:
    from models.summariser.metrics import score_summaries

    started = time.perf_counter()
    texts = summariser.summarise(groups)
    seconds = time.perf_counter() - started
    raw, reports = score_summaries(texts, groups, references, vocabulary)
    published = [t if r.passed else narrate(g) for t, r, g in zip(texts, reports, groups, strict=True)]
    after, _ = score_summaries(published, groups, references, vocabulary)
    return {
        **raw.as_record(),
        "published": {
            k: v
            for k, v in after.as_record().items()
            if k in ("rouge_l", "hallucinated_event_rate", "omitted_serious_event_rate", "numeric_error_rate")
        },
        "seconds": round(seconds, 1),
        "provider": summariser.provider,
    }


def evaluate_dir(path: Path, model_dir: Path, runtime: RuntimeConfig) -> dict[str, Any]:
    """The eval contract: each stage's raw figures (before the guard) and what the guard lets through.

    Top level and ``before_dpo`` / ``after_dpo``: the deployed decoding (fact-copy on a causal model);
    ``free_decoding``: the same stages with every token the model's own choice, the figures that say what
    the model learnt (seq2seq models decode freely in both).
    """
    from models.summariser.generator import load_summariser, stages_of

    groups, references = read_eval_file(path)
    vocabulary = read_vocabulary(model_dir)
    result: dict[str, Any] = {"records": len(groups), "model_dir": str(model_dir), "decoding": "fact-copy"}
    names = {"sft": "before_dpo", "dpo": "after_dpo"}
    free: dict[str, Any] = {"before_dpo": None}
    for stage in stages_of(model_dir):
        loaded = load_summariser(model_dir, runtime.providers, runtime.threads, stage)
        for fact_copy, into in ((True, result), (False, free)):
            into[names[stage]] = _stage_figures(loaded.decoding(fact_copy), groups, references, vocabulary)
    result["free_decoding"] = free
    final = result["after_dpo"]
    for key in (
        "rouge_l",
        "hallucinated_event_rate",
        "omitted_serious_event_rate",
        "numeric_error_rate",
        "guard_fallback_rate",
    ):
        result[key] = final[key]
    result.setdefault("before_dpo", None)
    return result
