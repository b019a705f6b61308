"""The sync's overprescription step: patients whose orders changed -> DetectedIssue warnings, written or withdrawn.

For every patient with a MedicationRequest changed in this run, the patient's *current* orders are judged
again, whatever changed: the warnings are a function of the record, not of the order of edits, so a re-run,
a resumed run or a backfill reaches the same DetectedIssues. The active orders are judged like the drafts of
one prescribing visit per day a drug's course began, against the active orders of drugs begun earlier (what
the CDS service does at order-sign), by the injected ``OrderAssessor`` (overprescription rules, plus the
recommender when built); see ``visit_groups``.

One DetectedIssue per (patient, drug, set of reason kinds), key ``overrx-<patient>-<drug>-<kinds>``; it
implicates that drug's warned MedicationRequests, and ``identifiedDateTime`` is the earliest one's
``authoredOn``, so its content depends on the record only and an identical re-write is a no-op. A warning of
ours (our identifier system, key prefix ``overrx-``) that the current orders no longer produce is set to
``cancelled``, never deleted; DetectedIssues of other systems are never read for that, let alone touched.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Literal

from adapters import (
    DetectedIssueInput,
    FhirClient,
    MedicationOrder,
    RecordedDetectedIssue,
    WriteReport,
    fetch_adverse_events,
    fetch_detected_issues,
    fetch_patient_context,
    pull_orders,
    withdraw_detected_issues,
    write_detected_issues,
)
from cds.decisions import OrderAssessor, OrderWarning
from cds.formulary import Formulary
from cds.recommender_assessor import drug_name
from cds.sync import SyncReport

log = logging.getLogger(__name__)

KEY_PREFIX = "overrx-"
_MAX_KEY = 200
_SLUG = re.compile(r"[^a-z0-9.]+")
_READ_CONCURRENCY = 4
# statuses of orders that were (or are being) given: they date the start of a drug's course
COURSE_STATUSES = frozenset({"active", "on-hold", "draft", "completed"})


@dataclass(frozen=True)
class IssueAuthor:
    """The Device every warning and withdrawal names (rules, plus the recommender when one is built)."""

    name: str
    version: str


@dataclass(frozen=True)
class PatientPlan:
    """What one patient's re-assessment changes on the server."""

    patient_id: str
    write: tuple[DetectedIssueInput, ...] = ()
    unchanged: tuple[str, ...] = ()
    withdraw: tuple[RecordedDetectedIssue, ...] = ()


@dataclass
class IssueSyncCounts:
    patients: int = 0
    warnings: int = 0
    written: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    failures: list[dict[str, object]] = field(default_factory=list)


def _sort_key(order: MedicationOrder) -> tuple[datetime, str]:
    return (order.authored_on or datetime.max.replace(tzinfo=UTC), order.id)


def visit_groups(
    orders: Iterable[MedicationOrder], drug_of: Callable[[MedicationOrder], str]
) -> list[tuple[list[MedicationOrder], list[MedicationOrder]]]:
    """The active orders by the day their drug's course began, oldest first: (those orders, earlier ones).

    A course begins at the drug's first order that was given or is in force (``completed`` included: a
    re-order supersedes the last one, it does not start a new therapy), so a drug re-ordered every cycle
    keeps its place and the drug added later beside it is the one judged against it. Orders without
    ``authoredOn`` form the last group, judged against every dated one.
    """
    orders = list(orders)
    started: dict[str, datetime] = {}
    for order in orders:
        if order.authored_on is not None and order.status in COURSE_STATUSES:
            drug = drug_of(order)
            started[drug] = min(started.get(drug, order.authored_on), order.authored_on)
    days: dict[date | None, list[MedicationOrder]] = {}
    for order in sorted((o for o in orders if o.is_active), key=_sort_key):
        begun = started.get(drug_of(order), order.authored_on)
        days.setdefault(begun.date() if begun else None, []).append(order)
    groups: list[tuple[list[MedicationOrder], list[MedicationOrder]]] = []
    earlier: list[MedicationOrder] = []
    for day in sorted(days, key=lambda d: (d is None, d or date.min)):
        groups.append((days[day], list(earlier)))
        earlier += days[day]
    return groups


def issue_key(patient_id: str, drug: str, kinds: Sequence[str]) -> str:
    """``overrx-<patient>-<drug>-<kinds>``: readable, whitespace-free; a digest past 200 characters."""
    slug = _SLUG.sub("-", drug.lower()).strip("-") or "drug"
    key = f"{KEY_PREFIX}{patient_id}-{slug}-{'+'.join(sorted(kinds))}"
    if len(key) > _MAX_KEY:
        # a digest, not a cut: two long drug names sharing a prefix must not share a warning
        key = f"{KEY_PREFIX}{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def _severity(kinds: Sequence[str]) -> Literal["high", "moderate", "low"]:
    if "prior_serious_ade" in kinds:
        return "high"
    return "moderate" if "duplicate_therapy" in kinds or "biomarker_mismatch" in kinds else "low"


def issue_inputs(
    patient_id: str,
    warned: Sequence[tuple[OrderWarning, MedicationOrder]],
    formulary: Formulary,
    author: IssueAuthor,
) -> list[DetectedIssueInput]:
    """One DetectedIssue per (drug, reason kinds) of a patient's warnings, in a stable order (pure)."""
    grouped: dict[str, list[tuple[OrderWarning, MedicationOrder]]] = {}
    for warning, order in sorted(warned, key=lambda pair: _sort_key(pair[1])):
        key = issue_key(patient_id, drug_name(order, formulary), warning.kinds)
        grouped.setdefault(key, []).append((warning, order))
    items: list[DetectedIssueInput] = []
    for key in sorted(grouped):
        pairs = grouped[key]
        first_warning, first_order = pairs[0]
        reasons = list(dict.fromkeys(r for w, _ in pairs for r in w.reasons))
        scores = [w.score for w, _ in pairs if not math.isnan(w.score)]
        when = first_order.authored_on or first_order.last_updated
        if when is None:
            log.warning("order without authoredOn or lastUpdated; no warning written", extra={"order": first_order.id})
            continue
        items.append(
            DetectedIssueInput(
                key=key,
                patient_id=patient_id,
                medication_request_id=first_order.id,
                also_implicated=tuple(o.id for _, o in pairs[1:]),
                drug_rxnorm=first_order.rxnorm_code,
                drug_display=first_warning.drug_display,
                severity=_severity(first_warning.kinds),
                detail=f"{first_warning.drug_display} is likely overprescribed: {'; '.join(reasons)}.",
                identified=when,
                model_name=author.name,
                model_version=author.version,
                score=min(scores) if scores else None,
            )
        )
    return items


def _same(record: RecordedDetectedIssue, item: DetectedIssueInput) -> bool:
    """True when the server already holds this warning as we would write it (status final, same content)."""
    implicated = tuple(r for r in (item.medication_request_id, *item.also_implicated) if r)
    score = None if item.score is None else round(float(item.score), 6)
    return (
        record.status == "final"
        and record.medication_request_ids == implicated
        and record.detail == item.detail
        and record.severity == item.severity
        and record.identified == item.identified
        and record.score == score
    )


def plan_patient(
    patient_id: str, items: Sequence[DetectedIssueInput], ours: Sequence[RecordedDetectedIssue]
) -> PatientPlan:
    """Which warnings to write, which already stand, which of ours to withdraw (pure)."""
    existing = {r.key: r for r in ours if r.key}
    write = tuple(i for i in items if i.key not in existing or not _same(existing[i.key], i))
    unchanged = tuple(i.key for i in items if i.key in existing and _same(existing[i.key], i))
    wanted = {i.key for i in items}
    withdraw = tuple(
        r for r in ours if r.key and r.key.startswith(KEY_PREFIX) and r.key not in wanted and not r.withdrawn
    )
    return PatientPlan(patient_id, write, unchanged, withdraw)


class DetectedIssueSync:
    """The sync's ``OrdersHook``: re-assess the patients whose orders changed and update their warnings."""

    def __init__(
        self, assessor: OrderAssessor, formulary: Formulary, author: IssueAuthor, write_batch_size: int = 100
    ) -> None:
        self._assessor = assessor
        self._formulary = formulary
        self._author = author
        self._batch_size = write_batch_size

    async def __call__(self, client: FhirClient, changed: list[MedicationOrder], report: SyncReport) -> None:
        counts = await self.run(client, sorted({o.patient_id for o in changed if o.patient_id}))
        report.add("overprescription_patients_assessed", counts.patients)
        report.add("overprescription_warnings", counts.warnings)
        report.add("DetectedIssue_written", counts.written)
        report.add("DetectedIssue_unchanged", counts.unchanged)
        report.add("DetectedIssue_withdrawn", counts.withdrawn)
        report.errors.extend(counts.failures)

    async def run(self, client: FhirClient, patients: Sequence[str]) -> IssueSyncCounts:
        """Plan every patient (bounded concurrency), then write, then withdraw; raises on transient failures."""
        gate = asyncio.Semaphore(_READ_CONCURRENCY)

        async def one(patient: str) -> PatientPlan:
            async with gate:
                return await self.plan(client, patient)

        plans = await asyncio.gather(*(one(p) for p in patients))
        counts = IssueSyncCounts(patients=len(plans))
        counts.unchanged = sum(len(p.unchanged) for p in plans)
        counts.warnings = counts.unchanged + sum(len(p.write) for p in plans)
        writes = [item for p in plans for item in p.write]
        if writes:
            written = await write_detected_issues(client, writes, batch_size=self._batch_size)
            counts.written = len(written.references)
            self._failures(written, counts)
        withdrawals = [r for p in plans for r in p.withdraw]
        if withdrawals:
            withdrawn = await withdraw_detected_issues(
                client,
                [r.id for r in withdrawals],
                model_name=self._author.name,
                model_version=self._author.version,
                batch_size=self._batch_size,
            )
            counts.withdrawn = len(withdrawn.references)
            self._failures(withdrawn, counts)
        log.info(
            "overprescription warnings updated",
            extra={"patients": counts.patients, "written": counts.written, "withdrawn": counts.withdrawn},
        )
        return counts

    async def plan(self, client: FhirClient, patient_id: str) -> PatientPlan:
        orders = [o async for o in pull_orders(client, None, params=[("patient", f"Patient/{patient_id}")])]
        ours = await fetch_detected_issues(client, patient_id)
        groups = visit_groups(orders, lambda o: drug_name(o, self._formulary))
        warned: list[tuple[OrderWarning, MedicationOrder]] = []
        if groups:
            # age as of the newest order, not today, so the recommender's input (and its score) is reproducible
            newest = max((o.authored_on for o in orders if o.authored_on), default=None)
            context = await fetch_patient_context(client, patient_id, now=newest, recent_days=None, max_notes=0)
            prior = await fetch_adverse_events(client, patient_id)
            for drafts, earlier in groups:
                by_id = {d.id: d for d in drafts}
                visit = replace(context, medications=[*earlier, *drafts], recent_notes=[])
                for warning in await self._assessor.assess(visit, drafts, prior):
                    if warning.medication_request_id in by_id:
                        warned.append((warning, by_id[warning.medication_request_id]))
        items = issue_inputs(patient_id, warned, self._formulary, self._author)
        return plan_patient(patient_id, items, ours)

    @staticmethod
    def _failures(written: WriteReport, counts: IssueSyncCounts) -> None:
        for failure in written.failures:
            counts.failures.append(
                {
                    "stage": "DetectedIssue",
                    "key": failure.key,
                    "status": failure.status,
                    "code": failure.code,
                    "diagnostics": failure.diagnostics[:300],
                }
            )
