"""End-to-end evaluation: what a sync left on the FHIR server against the cohort generator's ground truth.

ADE findings: our AdverseEvents (identifier system ``SID_ADVERSE_EVENT``, keys of kind ``ade``) against the
non-negated ADEs of ``notes.jsonl``, matched as sets of (patient, drug, CTCAE term, grade); the drug is
its RxNorm ingredient code where known, else its lower-cased ingredient name. Radiotherapy toxicities
(keys of kind ``tox``) are scored the same way against the ``present`` toxicities, as (patient, symptom,
grade). Warnings: our standing DetectedIssues (``SID_DETECTED_ISSUE``; ``cancelled`` ones were withdrawn and
do not count) against ``overprescriptions.jsonl``, matched as (patient, first implicated MedicationRequest id).
Only the patients named in the truth files are read, so other data on the server (Synthea patients, other
tests) does not count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters import (
    FhirClient,
    RecordedAdverseEvent,
    RecordedDetectedIssue,
    fetch_adverse_events,
    fetch_detected_issues,
)
from cds.errors import CohortError, ConfigError
from cds.findings_map import identify_drug

OVERPRESCRIPTIONS = "overprescriptions.jsonl"
NOTES = "notes.jsonl"
_READ_CONCURRENCY = 4

AdeKey = tuple[str, str, str, int | None]
ToxKey = tuple[str, str, int | None]
WarningKey = tuple[str, str | None]


@dataclass(frozen=True)
class E2eTruth:
    patients: frozenset[str]
    ades: frozenset[AdeKey]
    toxicities: frozenset[ToxKey]
    warnings: frozenset[WarningKey]
    has_warning_file: bool


@dataclass(frozen=True)
class E2ePredictions:
    ades: frozenset[AdeKey]
    toxicities: frozenset[ToxKey]
    warnings: frozenset[WarningKey]


def drug_key(rxnorm: str | None, name: str | None) -> str:
    if rxnorm:
        return rxnorm
    identity = identify_drug(name or "")
    return identity.rxnorm or identity.ingredient


def _term(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CohortError("OV-0046", f"cannot read {path} ({exc.strerror or exc}); pass the generator's file") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = data.count(b"\n", 0, exc.start) + 1
        raise CohortError(
            "OV-0046", f"{path}:{at}: not UTF-8 text (byte 0x{data[exc.start]:02x}); pass the generator's file"
        ) from exc
    # "\n" only: splitlines() also breaks at U+2028 and other separators a valid JSON string may hold raw
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:  # ValueError: also an integer too long to parse
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            raise CohortError("OV-0046", f"{path}:{number} is not JSON ({reason}); pass the generator's file") from exc
        if not isinstance(row, dict):
            raise CohortError("OV-0046", f"{path}:{number} is not a JSON object; pass the generator's file")
        rows.append(row)
    return rows


def read_truth(path: Path) -> E2eTruth:
    """Ground truth from ``notes.jsonl`` (a file, or the folder holding it) and its sibling overprescriptions."""
    notes_file = path / NOTES if path.is_dir() else path
    if not notes_file.is_file():
        raise CohortError("OV-0045", f"truth file {notes_file} does not exist; pass the cohort's notes.jsonl")
    patients: set[str] = set()
    ades: set[AdeKey] = set()
    toxicities: set[ToxKey] = set()
    try:
        notes = _jsonl(notes_file)
        if not notes:
            # nothing to score against: every figure would be a meaningless 0
            raise ConfigError("OV-0151", f"no notes in {notes_file}; pass the cohort's notes.jsonl")
        for note in notes:
            patient = str(note["patient_id"])
            patients.add(patient)
            for ade in note.get("ades") or []:
                if ade.get("negated"):
                    continue
                ades.add(
                    (patient, drug_key(ade.get("rxnorm"), ade.get("drug")), _term(ade["ctcae_term"]), ade.get("grade"))
                )
            for symptom, state in (note.get("toxicities") or {}).items():
                if state.get("status") == "present":
                    toxicities.add((patient, _term(symptom), state.get("grade")))
        over_file = notes_file.with_name(OVERPRESCRIPTIONS)
        warnings: set[WarningKey] = set()
        if over_file.is_file():
            for row in _jsonl(over_file):
                patients.add(str(row["patient_id"]))
                warnings.add((str(row["patient_id"]), row.get("medication_request_id")))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CohortError(
            "OV-0046",
            f"{notes_file} does not follow the truth format (missing or bad field {exc}); "
            "pass the notes.jsonl written by `oncovigil cohort generate` or `oncovigil sandbox seed`",
        ) from exc
    return E2eTruth(
        frozenset(patients), frozenset(ades), frozenset(toxicities), frozenset(warnings), over_file.is_file()
    )


def prediction_keys(events: Iterable[RecordedAdverseEvent], issues: Iterable[WarningKey]) -> E2ePredictions:
    """Our AdverseEvents (by the kind in their finding key) and warnings, as match keys (pure)."""
    ades: set[AdeKey] = set()
    toxicities: set[ToxKey] = set()
    for event in events:
        key = event.finding_key or ""
        if not event.patient_id:
            continue
        if key.startswith("ade-"):
            ades.add(
                (
                    event.patient_id,
                    drug_key(event.drug_rxnorm, event.drug_display),
                    _term(event.ctcae_term),
                    event.grade,
                )
            )
        elif key.startswith("tox-"):
            toxicities.add((event.patient_id, _term(event.ctcae_term), event.grade))
    return E2ePredictions(frozenset(ades), frozenset(toxicities), frozenset(issues))


def prf(predicted: frozenset[Any], truth: frozenset[Any], prefix: str) -> dict[str, float | int]:
    """Set precision, recall and F1 (0.0 when undefined) with the counts behind them."""
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        f"{prefix}_precision": round(precision, 4),
        f"{prefix}_recall": round(recall, 4),
        f"{prefix}_f1": round(f1, 4),
        f"{prefix}_true_positives": tp,
        f"{prefix}_predicted": len(predicted),
        f"{prefix}_truth": len(truth),
    }


def score(truth: E2eTruth, predictions: E2ePredictions) -> dict[str, Any]:
    """The contract keys (ade_*, warning_*) plus toxicity_* and the number of patients scored."""
    keep = truth.patients
    metrics: dict[str, Any] = {"patients": len(keep), "warning_truth_file": truth.has_warning_file}
    metrics |= prf(frozenset(k for k in predictions.ades if k[0] in keep), truth.ades, "ade")
    metrics |= prf(frozenset(k for k in predictions.warnings if k[0] in keep), truth.warnings, "warning")
    metrics |= prf(frozenset(k for k in predictions.toxicities if k[0] in keep), truth.toxicities, "toxicity")
    return metrics


def warning_keys(issues: Iterable[RecordedDetectedIssue]) -> list[WarningKey]:
    """(patient, first implicated MedicationRequest id) of our standing warnings; withdrawn ones do not count."""
    return [
        (issue.patient_id, issue.medication_request_ids[0] if issue.medication_request_ids else None)
        for issue in issues
        if issue.key is not None and issue.patient_id and not issue.withdrawn
    ]


async def read_predictions(client: FhirClient, patients: Sequence[str]) -> E2ePredictions:
    """Our AdverseEvents and DetectedIssues of these patients, read from the server."""
    gate = asyncio.Semaphore(_READ_CONCURRENCY)

    async def one(patient: str) -> tuple[list[RecordedAdverseEvent], list[WarningKey]]:
        async with gate:
            events = [e for e in await fetch_adverse_events(client, patient) if e.finding_key]
            issues = warning_keys(await fetch_detected_issues(client, patient))
            return events, issues

    results = await asyncio.gather(*(one(p) for p in patients))
    return prediction_keys((e for events, _ in results for e in events), (k for _, issues in results for k in issues))


async def evaluate_e2e(client: FhirClient, truth: E2eTruth) -> dict[str, Any]:
    predictions = await read_predictions(client, sorted(truth.patients))
    return score(truth, predictions)
