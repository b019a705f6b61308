"""The nightly pharmacovigilance sync: pull -> extract -> store -> write back -> advance the watermark.

Three stages overlap through bounded queues (FHIR reads, ONNX inference in a worker thread, FHIR writes), so
the model is not idle while the network works and memory stays flat however many notes there are.

Crash safety: notes arrive oldest change first; the writer handles batches in that order and advances the
watermark only after a batch's writes were confirmed. A restart re-reads from one millisecond before the
watermark (a transaction stamps many resources with the same instant) and skips inputs whose
(task, version, content hash) was already processed; conditional creates make any repeated write a no-op.
Per-drug summaries are rewritten for every drug with findings newer than the last completed summary
write (a state-store mark), so drugs whose findings a crashed run stored still get their summary.

Our own summaries are DocumentReferences too: the pull sees them and leaves them to the watermark only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters import (
    AdeSummaryInput,
    AdverseEventInput,
    FhirClient,
    MedicationOrder,
    Note,
    PhenotypeObservationInput,
    PullStats,
    ResourceBuildError,
    WriteFailure,
    WriteReport,
    pull_notes,
    pull_orders,
    withdraw_adverse_events,
    withdraw_lost_observations,
    write_ade_summaries,
    write_adverse_events,
    write_phenotype_observations,
    write_primary_cancer_conditions,
)
from cds.errors import SyncError
from cds.extraction import LoadedExtractors, NoteFindings
from cds.findings_map import ade_inputs, combination_rows, finding_key, toxicity_inputs
from cds.grouping import AdeObservation, group_by_drug, to_drug_group
from cds.phenotype_map import note_order, phenotype_inputs, primary_cancer_input, stored_model
from cds.state import StateStore
from cds.summarise import GuardedSummariser, grouped_record_row

log = logging.getLogger(__name__)

NOTES = "DocumentReference"
ORDERS = "MedicationRequest"
SUMMARIES = "ade-summary"  # state mark: findings created before it are in the summaries on the server
PRIMARY_CANCERS = "primary-cancer"  # state mark: phenotypes stored before it are in the patients' Conditions
ADE_ASSESSED = "ade-assessed"  # state mark: patients' ADE findings stored before it are in their warnings
# DocumentReference type codes we write ourselves (adapters' ADE summary); extracting them would feed
# our output back in as input
GENERATED_NOTE_TYPES = frozenset({"ade-summary"})
AE_KINDS = ("ade", "toxicity")  # findings written as AdverseEvents, withdrawn when their note loses them
_DONE = object()


@dataclass(frozen=True)
class SyncOptions:
    batch_size: int = 16
    queue_batches: int = 4
    since: datetime | None = None  # backfill: start here instead of at the watermark
    summary_window_days: int = 365
    write_batch_size: int = 100


@dataclass
class SyncReport:
    run_id: int
    counts: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = int(self.counts.get(key, 0)) + n


OrdersHook = Callable[[FhirClient, list[MedicationOrder], SyncReport], Awaitable[None]]
ProgressHook = Callable[[str, int], None]
# called with a stage name at the points where a crash matters (cds.faults); a no-op in production
Checkpoint = Callable[[str], None]
# replaces the in-process notes stage (the Ray engine, cds.sync_ray); orders and summaries stay here
NotesStage = Callable[["SyncJob", SyncReport], Awaitable[None]]


def _content_hash(note: Note) -> str:
    return hashlib.sha256(f"{note.version_id}\x1f{note.text}".encode()).hexdigest()


def _resume_from(watermark: str | None, since: datetime | None) -> datetime | None:
    if since is not None:
        return since
    if watermark is None:
        return None
    return datetime.fromisoformat(watermark) - timedelta(milliseconds=1)


class SyncJob:
    """One run of the sync; collaborators are injected by the composition root."""

    def __init__(
        self,
        store: StateStore,
        client: FhirClient,
        extractors: LoadedExtractors,
        options: SyncOptions | None = None,
        on_orders: OrdersHook | None = None,
        progress: ProgressHook | None = None,
        checkpoint: Checkpoint | None = None,
        notes_stage: NotesStage | None = None,
        summariser: GuardedSummariser | None = None,
    ) -> None:
        self._store = store
        # deterministic narrative unless the composition root injects a model-backed (guarded) summariser
        self._summariser = summariser or GuardedSummariser()
        self._client = client
        self._extractors = extractors
        self._options = options or SyncOptions()
        self._on_orders = on_orders
        self._progress = progress or (lambda _stage, _n: None)
        self._checkpoint = checkpoint or (lambda _stage: None)
        self._notes_stage = notes_stage
        self._orders_cache: dict[str, list[MedicationOrder]] = {}
        self._touched_drugs: set[str] = set()
        self._withdrawn_for: set[str] = set()  # patients whose AdverseEvents this run withdrew

    async def run(self) -> SyncReport:
        report = SyncReport(run_id=self._store.start_run("sync"))
        log.info("sync started", extra={"run_id": report.run_id, "missing_models": self._extractors.missing})
        try:
            if self._notes_stage is not None and self._extractors.extractors:
                await self._notes_stage(self, report)
            else:
                await self._sync_notes(report)
            await self._withdraw_lost_findings(report)
            await self._write_primary_cancers(report)
            await self._sync_orders(report)
            await self._write_summaries(report)
            report.status = "ok" if not report.errors else "partial"
        except Exception as exc:
            report.status = "failed"
            report.errors.append({"stage": "run", "error": type(exc).__name__, "message": str(exc)[:500]})
            self._store.finish_run(report.run_id, report.status, report.counts, report.errors)
            log.error("sync failed", extra={"run_id": report.run_id, "error": type(exc).__name__})
            raise SyncError("OV-0060", f"sync run {report.run_id} failed: {exc}; the watermark was not "
                            "advanced past unconfirmed writes, run it again") from exc
        self._store.finish_run(report.run_id, report.status, report.counts, report.errors)
        log.info("sync finished", extra={"run_id": report.run_id, "status": report.status, "counts": report.counts})
        return report

    # notes ------------------------------------------------------------------------------------------
    async def _sync_notes(self, report: SyncReport) -> None:
        if not self._extractors.extractors:
            # without a model nothing would be extracted, yet the watermark would pass every note for good
            log.warning("no extractor built; notes left for a later run", extra={"run_id": report.run_id})
            report.counts["notes_not_read_no_models"] = True
            return
        opts = self._options
        since = _resume_from(self._store.get_watermark(NOTES), opts.since)
        to_infer: asyncio.Queue[Any] = asyncio.Queue(maxsize=opts.queue_batches)
        to_write: asyncio.Queue[Any] = asyncio.Queue(maxsize=opts.queue_batches)
        stats = PullStats()

        async def read() -> None:
            batch: list[Note] = []
            async for note in pull_notes(self._client, since, stats=stats):
                report.add("notes_pulled")
                self._checkpoint("pull")
                batch.append(note)
                if len(batch) >= opts.batch_size:
                    await to_infer.put(batch)
                    batch = []
            if batch:
                await to_infer.put(batch)
            await to_infer.put(_DONE)

        async def infer() -> None:
            while (batch := await to_infer.get()) is not _DONE:
                ours = [n for n in batch if n.type_code in GENERATED_NOTE_TYPES]
                todo = [n for n in batch if n.type_code not in GENERATED_NOTE_TYPES and self._needs_processing(n)]
                report.add("notes_skipped_generated", len(ours))
                report.add("notes_skipped_unchanged", len(batch) - len(ours) - len(todo))
                findings: list[NoteFindings] = []
                if todo:
                    # ONNX Runtime releases the GIL: the event loop keeps reading and writing meanwhile
                    findings = await asyncio.to_thread(self._extract, [n.text for n in todo])
                await to_write.put((batch, todo, findings))
            await to_write.put(_DONE)

        async def write() -> None:
            while (item := await to_write.get()) is not _DONE:
                batch, todo, findings = item
                await self._write_note_batch(todo, findings, report)
                self._checkpoint("before-watermark")
                newest = max((n.last_updated for n in batch if n.last_updated), default=None)
                if newest is not None:
                    self._store.set_watermark(NOTES, newest.astimezone(UTC).isoformat())
                self._progress("notes", len(batch))

        await _gather_or_cancel(read(), infer(), write())
        if stats.skipped:
            report.counts["notes_not_current_or_unreadable"] = dict(stats.skipped)

    # what a NotesStage needs of the job: the same state, client, dedupe and write-back as the local stage
    @property
    def store(self) -> StateStore:
        return self._store

    @property
    def client(self) -> FhirClient:
        return self._client

    @property
    def options(self) -> SyncOptions:
        return self._options

    def checkpoint(self, stage: str) -> None:
        self._checkpoint(stage)

    def needs_processing(self, note: Note) -> bool:
        return note.type_code not in GENERATED_NOTE_TYPES and self._needs_processing(note)

    async def write_note_batch(self, notes: list[Note], findings: list[NoteFindings], report: SyncReport) -> None:
        await self._write_note_batch(notes, findings, report)

    def _extract(self, texts: list[str]) -> list[NoteFindings]:
        findings = self._extractors.run(texts)
        self._checkpoint("infer")
        return findings

    def _needs_processing(self, note: Note) -> bool:
        for task, version in self._extractors.versions.items():
            if self._store.processed_hash(task, version, note.id) != _content_hash(note):
                return True
        return False

    async def _patient_orders(self, patient_id: str) -> list[MedicationOrder]:
        if patient_id not in self._orders_cache:
            self._orders_cache[patient_id] = [
                o async for o in pull_orders(self._client, None, params=[("patient", f"Patient/{patient_id}")])
            ]
        return self._orders_cache[patient_id]

    async def _write_note_batch(self, notes: list[Note], findings: list[NoteFindings], report: SyncReport) -> None:
        events: list[AdverseEventInput] = []
        observations: list[PhenotypeObservationInput] = []
        reread: dict[str, set[str]] = {}  # note read before -> the Observation keys it states now
        for note, found in zip(notes, findings, strict=True):
            rows: list[dict[str, Any]] = []
            if "ade" in self._extractors.extractors:
                orders = await self._patient_orders(note.patient_id) if note.patient_id else []
                ade_events, ade_rows = ade_inputs(note, found.ade, orders, self._extractors.model_label("ade"))
                events += ade_events
                rows += ade_rows
                self._store.replace_note_findings(note.id, "ade", ade_rows, withdraw_lost=True)
            if "toxicity" in self._extractors.extractors:
                tox_events, tox_rows = toxicity_inputs(note, found.toxicity, self._extractors.model_label("toxicity"))
                events += tox_events
                self._store.replace_note_findings(note.id, "toxicity", tox_rows, withdraw_lost=True)
            if "drugcomb" in self._extractors.extractors:
                combos = combination_rows(note, found.combinations, self._extractors.model_label("drugcomb"))
                self._store.replace_note_findings(note.id, "combination", combos)
            if "phenotype" in self._extractors.extractors and found.phenotype is not None:
                obs, pheno_rows = phenotype_inputs(note, found.phenotype, self._extractors.model_label("phenotype"))
                observations += obs
                if self._store.findings(kind="phenotype", note_id=note.id):
                    reread[note.id] = {o.key for o in obs}
                self._store.replace_note_findings(note.id, "phenotype", pheno_rows)
            report.add("findings", len(rows))
        written = await self._write_events(events) if events else None
        self._checkpoint("write")
        if written is not None:
            self._account(written, report, "AdverseEvent")
            self._store.mark_written([e.finding_key for e in events if e.finding_key in written.references])
            self._touched_drugs.update(e.drug_rxnorm for e in events if e.drug_rxnorm)
        if observations:
            # a bad observation fails alone inside the writer (batches split on 4xx); the run goes on
            observed = await write_phenotype_observations(
                self._client, observations, batch_size=self._options.write_batch_size
            )
            self._account(observed, report, "Observation")
            done = {finding_key("phenotype", o.patient_id, o.note_id or "")
                    for o in observations if o.key in observed.references}
            self._store.mark_written(sorted(done))
        if reread:
            await self._withdraw_lost_observations(reread, report)
        for task, version in self._extractors.versions.items():
            self._store.mark_processed(task, version, [(n.id, _content_hash(n)) for n in notes])
        report.add("notes_processed", len(notes))

    async def _write_events(self, events: list[AdverseEventInput]) -> WriteReport:
        """Writes the batch; a finding we cannot turn into valid FHIR is a counted failure, not a failed run.

        A failed run would fail again on the same note every night, so one bad finding would stop the sync.
        """
        size = self._options.write_batch_size
        try:
            return await write_adverse_events(self._client, events, batch_size=size)
        except ResourceBuildError:
            log.warning("a finding could not be built; writing the batch one by one", extra={"events": len(events)})
        written = WriteReport()
        for event in events:
            try:
                written.merge(await write_adverse_events(self._client, [event], batch_size=size))
            except ResourceBuildError as exc:
                written.failures.append(WriteFailure(key=event.finding_key, resource_type="AdverseEvent", status=0,
                                                     code=exc.code, diagnostics=str(exc)))
        return written

    async def _withdraw_lost_observations(self, reread: dict[str, set[str]], report: SyncReport) -> None:
        """Observations of a re-read note that states their field no more are set to entered-in-error.

        Before the notes are marked processed: after a crash they are read again and this is recomputed from
        the server, so nothing waits in the store.
        """
        name, version = self._extractors.model_label("phenotype")
        for note_id, keep in sorted(reread.items()):
            withdrawn = await withdraw_lost_observations(
                self._client, note_id, keep, model_name=name, model_version=version,
                batch_size=self._options.write_batch_size,
            )
            self._account(withdrawn, report, "Observation_withdrawal")
            report.add("Observation_withdrawn", len(withdrawn.references))

    async def _withdraw_lost_findings(self, report: SyncReport) -> None:
        """AdverseEvents whose re-read notes (amended, or read by another model) no longer state them are
        marked entered-in-error; a row leaves the store only once the server confirmed, so a crashed run's
        withdrawals are done by the next one."""
        for kind in AE_KINDS:
            pending = self._store.pending_withdrawals([kind])
            if not pending:
                continue
            name, version = self._extractors.model_label(kind)
            withdrawn, gone = await withdraw_adverse_events(
                self._client, [r.key for r in pending], model_name=name, model_version=version,
                batch_size=self._options.write_batch_size,
            )
            self._account(withdrawn, report, "AdverseEvent_withdrawal")
            done = set(withdrawn.references) | set(gone)
            report.add("AdverseEvent_withdrawn", len(done))
            self._store.forget_findings(sorted(done))
            # the drugs' summaries are rewritten without them, the patients' warnings re-assessed without them
            self._touched_drugs.update(r.drug_rxnorm for r in pending if r.key in done and r.drug_rxnorm)
            self._withdrawn_for.update(r.patient_id for r in pending if r.key in done)

    def _account(self, written: WriteReport, report: SyncReport, what: str) -> None:
        report.add(f"{what}_created", written.total_created)
        report.add(f"{what}_existing", sum(written.existing.values()))
        for failure in written.failures:
            report.errors.append({"stage": what, "key": failure.key, "status": failure.status,
                                  "code": failure.code, "diagnostics": failure.diagnostics[:300]})

    # orders -----------------------------------------------------------------------------------------
    async def _sync_orders(self, report: SyncReport) -> None:
        since = _resume_from(self._store.get_watermark(ORDERS), self._options.since)
        changed: list[MedicationOrder] = []
        async for order in pull_orders(self._client, since):
            changed.append(order)
            if len(changed) % 200 == 0:
                self._progress("orders", 200)
        report.add("orders_pulled", len(changed))
        # A warning may rest on an AdverseEvent found since the last assessment or withdrawn this run: those
        # patients are re-assessed with their standing orders. The mark is the findings' stored time, so a run
        # that dies before the warnings are written leaves those findings to the next run.
        mark = self._store.get_watermark(ADE_ASSESSED)
        started = datetime.now(UTC)  # taken before reading: findings stored later are newer than the mark
        found_for = self._store.finding_patients_since("ade", datetime.fromisoformat(mark) if mark else None)
        unchanged = sorted((self._withdrawn_for | found_for) - {o.patient_id for o in changed if o.patient_id})
        standing = [o for patient in unchanged for o in await self._patient_orders(patient)]
        if self._on_orders is not None and (changed or standing):
            # the hook's writes (DetectedIssues) are confirmed when it returns; only then may the watermark pass
            await self._on_orders(self._client, changed + standing, report)
            self._checkpoint("orders")
        if found_for:
            self._store.set_watermark(ADE_ASSESSED, started.isoformat())
        # only what was pulled moves the watermark: an order read later for a re-assessment may be newer
        newest = max((o.last_updated for o in changed if o.last_updated), default=None)
        if newest is not None:
            self._store.set_watermark(ORDERS, newest.astimezone(UTC).isoformat())

    # primary cancers --------------------------------------------------------------------------------
    async def _write_primary_cancers(self, report: SyncReport) -> None:
        """Each patient with phenotypes stored since the last mark gets their primary cancer Condition rebuilt
        from *all* their stored phenotypes, newest note first.

        Once per run, after the notes: the content depends only on the stored rows, never on how the notes
        were batched, so a crashed and resumed run writes what an uninterrupted one does. The mark moves only
        after the writes; a run that died before leaves it, and the next run rebuilds those patients.
        """
        mark = self._store.get_watermark(PRIMARY_CANCERS)
        started = datetime.now(UTC)  # taken before reading: rows stored later are newer than the mark
        patients = self._store.finding_patients_since("phenotype", datetime.fromisoformat(mark) if mark else None)
        conditions = []
        for patient in sorted(patients):
            rows = sorted(self._store.findings(kind="phenotype", patient_id=patient), key=note_order, reverse=True)
            notes = [(r.note_id, r.payload) for r in rows]
            found = primary_cancer_input(patient, notes, stored_model(rows[0].model))
            if found is not None:
                conditions.append(found)
        if conditions:
            written = await write_primary_cancer_conditions(
                self._client, conditions, batch_size=self._options.write_batch_size
            )
            self._account(written, report, "Condition")
            if written.failures:
                return  # the mark stays: the next run tries these patients again
        if patients:
            self._store.set_watermark(PRIMARY_CANCERS, started.isoformat())

    # summaries --------------------------------------------------------------------------------------
    async def _write_summaries(self, report: SyncReport) -> None:
        mark = self._store.get_watermark(SUMMARIES)
        # taken before reading the findings: anything stored later is newer than the mark
        started = datetime.now(UTC)
        stale = self._store.finding_drugs_since("ade", datetime.fromisoformat(mark) if mark else None)
        drugs = self._touched_drugs | stale
        if not drugs:
            return
        observations: list[AdeObservation] = []
        for rxnorm in sorted(drugs):
            for row in self._store.findings(kind="ade", drug_rxnorm=rxnorm):
                p = row.payload
                if p.get("negated"):
                    continue
                observations.append(AdeObservation(
                    patient_id=row.patient_id, note_id=row.note_id, drug_rxnorm=rxnorm,
                    drug_display=str(p.get("drug_display") or p.get("drug")), ctcae_term=str(p["ctcae_term"]),
                    grade=p.get("grade"), onset=datetime.fromisoformat(p["date"]).date(),
                    evidence=str(p.get("event", "")),
                    span=tuple(p["event_span"]) if p.get("event_span") else None,
                ))
        records = group_by_drug(observations, self._options.summary_window_days)
        before = (self._summariser.counts.generated, self._summariser.counts.guard_fallbacks)
        published = await asyncio.to_thread(self._summariser.summarise, [to_drug_group(r) for r in records])
        generated = self._summariser.counts.generated - before[0]
        fallbacks = self._summariser.counts.guard_fallbacks - before[1]
        if generated:
            report.add("summaries_generated", generated)
        if fallbacks:
            report.add("summaries_guard_fallback", fallbacks)
        # the grouped record is stored with what was published, so `oncovigil summaries` shows exactly that
        self._store.upsert_findings([grouped_record_row(r, p) for r, p in zip(records, published, strict=True)])
        items = [
            AdeSummaryInput(
                key=f"ade-summary-{r.key}", drug_rxnorm=r.drug_rxnorm, drug_display=r.drug_display,
                period_start=r.period_start, period_end=r.period_end, markdown=p.markdown(r),
                model_name=p.model_name, model_version=p.model_version,
                title=f"Adverse events on {r.drug_display}, {r.period_start:%Y-%m-%d} to {r.period_end:%Y-%m-%d}",
            )
            for r, p in zip(records, published, strict=True)
        ]
        written = await write_ade_summaries(self._client, items, batch_size=self._options.write_batch_size)
        self._account(written, report, "AdeSummary")
        if not written.failures:
            self._store.set_watermark(SUMMARIES, started.isoformat())


async def _gather_or_cancel(*stages: Awaitable[None]) -> None:
    """Run the stages together; the first failure cancels the others so no stage waits forever on a queue."""
    tasks = [asyncio.ensure_future(s) for s in stages]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
