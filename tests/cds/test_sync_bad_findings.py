"""A bad finding never stops the sync: blank spans are dropped, an unbuildable event is a counted failure."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters import AdverseEventInput, FhirClient, FhirClientConfig, Note, fetch_adverse_events
from cds.extraction import LoadedExtractors
from cds.findings_map import ade_inputs
from cds.state import StateStore
from cds.sync import SyncJob
from models import AdeFinding

NOTE = Note(
    id="ov-test-bad-note", patient_id="ov-pat-0001", encounter_id=None, date=datetime(2026, 3, 4, tzinfo=UTC),
    type_code="11506-3", type_display="Progress note", status="current",
    text="Grade 2 nausea after cisplatin. ( ) nothing here.", version_id="1", last_updated=None,
)


def _finding(drug: str, event: str, ctcae: str | None = None, grade: int | None = 2) -> AdeFinding:
    return AdeFinding(drug=drug, drug_span=(0, 1), event=event, event_span=(8, 14), negated=False, grade=grade,
                      severity_word=None, ctcae_term=ctcae, meddra_code=None, confidence=0.9)


def test_findings_whose_drug_or_event_is_blank_are_dropped() -> None:
    findings = [_finding("cisplatin", "nausea", "Nausea"), _finding("( )", "nausea", "Nausea"),
                _finding("cisplatin", "  ", None)]
    events, rows = ade_inputs(NOTE, findings, [], ("oncovigil-ade", "ade-extractor.v1@1"))
    assert [(e.drug_display, e.ctcae_term) for e in events] == [("cisplatin", "Nausea")]
    assert len(rows) == 1


def test_an_event_that_cannot_be_built_is_a_failure_and_the_others_are_written(
    seeded_sandbox: Any, tmp_path: Path
) -> None:
    events, _ = ade_inputs(NOTE, [_finding("cisplatin", "nausea", "Nausea")], [], ("oncovigil-ade", "test@1"))
    # a key of no kind the e2e evaluation counts, and no note reference (that note is not on the server)
    good = replace(events[0], finding_key="ov-test-bad-findings-good", note_id=None)
    bad: AdverseEventInput = replace(good, finding_key=f"{good.finding_key}-grade-7", grade=7)  # CTCAE stops at 5

    async def go() -> tuple[Any, list[str]]:
        config = FhirClientConfig(base_url=seeded_sandbox.base_url, read_timeout_s=120.0)
        async with FhirClient(config) as client:
            store = StateStore(f"sqlite:///{tmp_path}/state.db")
            job = SyncJob(store, client, LoadedExtractors({}, {}, []))
            written = await job._write_events([bad, good])
            keys = [e.finding_key or "" for e in await fetch_adverse_events(client, "ov-pat-0001")]
            store.close()
            return written, keys

    written, keys = asyncio.run(go())
    assert [(f.key, f.code) for f in written.failures] == [(bad.finding_key, "OV-1084")]
    assert good.finding_key in written.references
    assert good.finding_key in keys and bad.finding_key not in keys
