"""The nightly sync against the live sandbox (seeded cohort) with the real extractors.

One state database for the module; the tests run in order: first sync, idle second sync, a new note,
then the operator views (`oncovigil runs`, `/healthz`) and the end-to-end score of what was written.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_sync_kit import cli_env, generated_counts, real_models_dir, run_cli

from adapters import FhirClient, FhirClientConfig, RecordedAdverseEvent, fetch_adverse_events
from cds.runner import run_sync_once
from cds.settings import Settings, load_settings
from cds.state import FindingRow, StateStore
from cds.sync import SyncReport

NEW_PATIENT = "ov-test-sync-new-patient"
NEW_NOTE = f"ov-test-sync-note-{uuid.uuid4().hex[:12]}"  # new on every run, even against a long-lived server
NEW_TEXT = (
    "Progress note. Cycle 3 of cisplatin given two weeks ago. Patient reports grade 2 nausea after cisplatin, "
    "controlled with ondansetron. Denies diarrhea. Plan: continue cisplatin at the same dose."
)
AMENDED_TEXT = (
    "Progress note (amended). Cycle 3 of cisplatin given two weeks ago, tolerated well. Denies diarrhea. "
    "Plan: continue cisplatin at the same dose."
)


@dataclass
class SyncedSandbox:
    base_url: str
    truth_dir: Path
    patients: list[str]
    settings: Settings
    store: StateStore
    reports: list[SyncReport] = field(default_factory=list)
    counts_before: dict[str, int] = field(default_factory=dict)

    def sync(self) -> SyncReport:
        # at INFO, like `oncovigil sync`: a log call with a bad `extra` only fails when it is enabled
        root = logging.getLogger()
        level = root.level
        root.setLevel(os.environ.get("ONCOVIGIL_TEST_LOG_LEVEL", "INFO"))
        try:
            report = asyncio.run(run_sync_once(self.settings, self.store))
        finally:
            root.setLevel(level)
        self.reports.append(report)
        return report


def _client(base_url: str) -> FhirClient:
    return FhirClient(FhirClientConfig(base_url=base_url, read_timeout_s=120.0))


def _server(base_url: str, coro_fn: Any) -> Any:
    async def go() -> Any:
        async with _client(base_url) as client:
            return await coro_fn(client)

    return asyncio.run(go())


def _truth_patients(truth_dir: Path) -> list[str]:
    lines = (truth_dir / "notes.jsonl").read_text().splitlines()
    return sorted({json.loads(line)["patient_id"] for line in lines if line.strip()})


@pytest.fixture(scope="session")
def models() -> Path:
    """Session-scoped like the sandbox fixture and listed first, so a missing model skips before a server starts."""
    return real_models_dir()


@pytest.fixture(scope="module")
def synced(models: Path, seeded_sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncedSandbox]:
    home = tmp_path_factory.mktemp("sync-home")
    settings = load_settings(
        home=home, fhir_base_url=seeded_sandbox.base_url, models_dir=models, state_db_url=f"sqlite:///{home}/state.db",
        onnx_providers=["CPUExecutionProvider"], sync_batch_size=8, fhir_read_timeout_s=120.0,
        cds_require_jwt=False, environment="development",
    )
    store = StateStore(str(settings.state_db_url))
    state = SyncedSandbox(seeded_sandbox.base_url, seeded_sandbox.truth_dir, _truth_patients(seeded_sandbox.truth_dir),
                          settings, store)
    state.counts_before = _server(state.base_url, generated_counts)
    state.sync()
    yield state
    store.close()


def _ours(events: list[RecordedAdverseEvent]) -> dict[str, RecordedAdverseEvent]:
    """Our AdverseEvents written from note findings (finding keys of kind ade / tox), by key."""
    return {e.finding_key: e for e in events if e.finding_key and e.finding_key.startswith(("ade-", "tox-"))}


def _expected(rows: list[FindingRow]) -> tuple[set[str], set[str]]:
    """(keys that must be AdverseEvents, keys that must not): non-negated ADEs and present toxicities."""
    must: set[str] = set()
    must_not: set[str] = set()
    for row in rows:
        if row.kind == "ade":
            (must_not if row.payload.get("negated") else must).add(row.key)
        elif row.kind == "toxicity":
            (must if row.payload.get("status") == "present" else must_not).add(row.key)
    return must, must_not


def test_first_sync_writes_one_adverse_event_per_non_negated_finding(synced: SyncedSandbox) -> None:
    first = synced.reports[0]
    assert first.status == "ok", first.errors
    assert first.counts.get("notes_processed", 0) > 0
    all_must, _ = _expected(synced.store.findings())
    assert all_must, "the real extractors found no adverse event in the whole seeded sandbox"
    assert {r.key for r in synced.store.findings() if r.written} >= all_must, "a finding was not confirmed written"
    checked = 0
    for patient in synced.patients:
        rows = synced.store.findings(patient_id=patient)
        must, must_not = _expected(rows)
        on_server = _ours(_server(synced.base_url, lambda c, p=patient: fetch_adverse_events(c, p)))
        assert must <= set(on_server), f"patient {patient}: a non-negated finding has no AdverseEvent"
        assert not must_not & set(on_server), f"patient {patient}: a negated finding became an AdverseEvent"
        by_key = {r.key: r for r in rows}
        for key in must:
            event, row = on_server[key], by_key[key]
            assert event.patient_id == patient and event.note_id == row.note_id
            assert event.generated_by_oncovigil
            assert event.grade == row.payload["grade"]
            assert event.ctcae_term == row.payload["ctcae_term"]
            if row.kind == "ade":
                assert event.drug_rxnorm == row.drug_rxnorm
                assert event.medication_request_id == row.payload["medication_request_id"]
        checked += len(must)
    assert checked > 0, "the real extractors found no adverse event for any cohort patient"


def test_second_sync_writes_nothing_and_processes_no_note(synced: SyncedSandbox) -> None:
    after_first = _server(synced.base_url, generated_counts)
    assert after_first["AdverseEvent"] > synced.counts_before["AdverseEvent"] or synced.reports[0].counts.get(
        "AdverseEvent_existing", 0
    ) > 0
    second = synced.sync()
    assert second.status == "ok", second.errors
    assert second.counts.get("notes_processed", 0) == 0
    assert second.counts.get("AdverseEvent_created", 0) == 0
    assert second.counts.get("AdeSummary_created", 0) == 0
    assert _server(synced.base_url, generated_counts) == after_first


def _new_note_bundle(plain: str = NEW_TEXT, doc_status: str = "final") -> dict[str, Any]:
    text = base64.b64encode(plain.encode()).decode()
    patient = {"resourceType": "Patient", "id": NEW_PATIENT, "gender": "male", "birthDate": "1955-04-02"}
    note = {
        "resourceType": "DocumentReference", "id": NEW_NOTE, "status": "current", "docStatus": doc_status,
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": f"Patient/{NEW_PATIENT}"}, "date": "2026-03-04T10:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": text}}],
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in (patient, note)
    ]}


def test_a_new_note_is_picked_up_by_the_next_sync_only(synced: SyncedSandbox) -> None:
    _server(synced.base_url, lambda c: c.transaction(_new_note_bundle()))
    third = synced.sync()
    assert third.status == "ok", third.errors
    assert third.counts.get("notes_processed", 0) == 1
    rows = [r for r in synced.store.findings(patient_id=NEW_PATIENT) if r.note_id == NEW_NOTE]
    assert rows, "the extractors found nothing in the new note"
    must, must_not = _expected(rows)
    on_server = _ours(_server(synced.base_url, lambda c: fetch_adverse_events(c, NEW_PATIENT)))
    assert must <= set(on_server) and not must_not & set(on_server)
    fourth = synced.sync()
    assert fourth.status == "ok", fourth.errors
    assert fourth.counts.get("notes_processed", 0) == 0


def test_an_amended_note_withdraws_the_adverse_events_it_no_longer_states(synced: SyncedSandbox) -> None:
    from adapters.identifiers import ENTERED_IN_ERROR, EXT_R5_ADVERSE_EVENT_STATUS, logical_id

    before = _ours(_server(synced.base_url, lambda c: fetch_adverse_events(c, NEW_PATIENT)))
    assert before, "the new note's adverse event was not written"
    _server(synced.base_url, lambda c: c.transaction(_new_note_bundle(AMENDED_TEXT, doc_status="amended")))
    amended = synced.sync()
    assert amended.status == "ok", amended.errors
    assert amended.counts.get("notes_processed", 0) == 1
    stated = {r.key for r in synced.store.findings(patient_id=NEW_PATIENT) if r.note_id == NEW_NOTE}
    lost = set(before) - stated
    assert lost, "the amended note no longer mentions nausea, yet every finding stayed"
    assert amended.counts.get("AdverseEvent_withdrawn", 0) == len(lost)
    assert synced.store.pending_withdrawals(["ade", "toxicity"]) == []
    after = _ours(_server(synced.base_url, lambda c: fetch_adverse_events(c, NEW_PATIENT)))
    assert not lost & set(after)  # readers (the CDS service's ADE history) no longer see them

    async def raw(client: FhirClient) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        found = []
        for key in sorted(lost):
            event = await client.read("AdverseEvent", logical_id("ae", key))
            target = f"AdverseEvent/{event['id']}"
            provenances = [p async for p in client.search("Provenance", [("target", target)])]
            found.append((event, provenances))
        return found

    for event, provenances in _server(synced.base_url, raw):  # kept on the server, marked, with a Provenance
        status = [x for x in event.get("extension", []) if x["url"] == EXT_R5_ADVERSE_EVENT_STATUS]
        assert [x["valueCode"] for x in status] == [ENTERED_IN_ERROR]
        activities = {c["code"] for p in provenances for c in p["activity"]["coding"]}
        assert {"CREATE", "NULLIFY"} <= activities

    versions = _server(synced.base_url, lambda c: c.read("AdverseEvent", logical_id("ae", sorted(lost)[0])))
    again = synced.sync()
    assert again.status == "ok" and again.counts.get("notes_processed", 0) == 0
    assert again.counts.get("AdverseEvent_withdrawn", 0) == 0
    unchanged = _server(synced.base_url, lambda c: c.read("AdverseEvent", logical_id("ae", sorted(lost)[0])))
    assert unchanged["meta"]["versionId"] == versions["meta"]["versionId"]


def test_runs_command_lists_every_run(synced: SyncedSandbox) -> None:
    env = cli_env(synced.settings.home, state_db_url=str(synced.settings.state_db_url))
    done = run_cli(["runs", "--json", "--limit", "50"], env, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    ids = [r.run_id for r in synced.reports]
    assert [r["id"] for r in listed] == sorted(ids, reverse=True)
    assert {r["status"] for r in listed} == {"ok"}
    assert all(r["kind"] == "sync" and r["ended_at"] for r in listed)
    text = run_cli(["runs"], env, timeout=120)
    assert text.returncode == 0 and f"#{ids[-1]} sync" in text.stdout


def test_healthz_reports_the_last_run(synced: SyncedSandbox) -> None:
    from cds.app import create_app

    app = create_app(synced.settings, store=synced.store)
    with TestClient(app) as http:
        body = http.get("/healthz").json()
    last = synced.reports[-1]
    assert body["status"] == "ok"
    assert body["last_sync"]["id"] == last.run_id
    assert body["last_sync"]["status"] == "ok"
    assert body["last_sync"]["counts"]["notes_processed"] == 0


def _raw_ade_keys(base_url: str, patients: set[str]) -> set[tuple[Any, ...]]:
    """(patient, drug, term, grade) of our ADE AdverseEvents, read straight from the JSON (not via adapters)."""
    from adapters.identifiers import EXT_CTCAE_GRADE, RXNORM, SID_ADVERSE_EVENT
    from cds.eval_e2e import drug_key

    async def read(client: FhirClient) -> set[tuple[Any, ...]]:
        keys = set()
        for patient in patients:
            async for ae in client.search("AdverseEvent", [("subject", f"Patient/{patient}")]):
                ident = ae.get("identifier") or {}
                if ident.get("system") != SID_ADVERSE_EVENT or not str(ident.get("value")).startswith("ade-"):
                    continue
                medication = (ae.get("contained") or [{}])[0].get("code") or {}
                rxnorm = next((c["code"] for c in medication.get("coding", []) if c.get("system") == RXNORM), None)
                grade = next((x["valueInteger"] for x in ae.get("extension", []) if x["url"] == EXT_CTCAE_GRADE), None)
                keys.add((patient, drug_key(rxnorm, medication.get("text")),
                          " ".join(ae["event"]["text"].lower().split()), grade))
        return keys

    result: set[tuple[Any, ...]] = _server(base_url, read)
    return result


def test_eval_e2e_scores_what_the_sync_wrote(synced: SyncedSandbox) -> None:
    """`oncovigil eval e2e` against the numbers computed here from the server's JSON and the truth file."""
    from cds.eval_e2e import drug_key, read_truth

    env = cli_env(synced.settings.home)
    done = run_cli(["eval", "e2e", "--truth", str(synced.truth_dir / "notes.jsonl"), "--url", synced.base_url,
                    "--json"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    for key in ("ade", "warning"):
        for metric in ("precision", "recall", "f1"):
            assert 0.0 <= metrics[f"{key}_{metric}"] <= 1.0
    truth = read_truth(synced.truth_dir / "notes.jsonl")
    on_server = _raw_ade_keys(synced.base_url, set(truth.patients))
    from_sync = {
        (r.patient_id, drug_key(r.drug_rxnorm, r.payload.get("drug")),
         " ".join(r.payload["ctcae_term"].lower().split()), r.payload["grade"])
        for p in truth.patients for r in synced.store.findings(kind="ade", patient_id=p) if not r.payload["negated"]
    }
    assert from_sync <= on_server  # everything this module's sync found is scored
    assert metrics["patients"] == len(truth.patients)
    assert metrics["ade_predicted"] == len(on_server)
    assert metrics["ade_truth"] == len(truth.ades) > 0
    assert metrics["ade_true_positives"] == len(on_server & truth.ades)
    assert metrics["warning_truth"] == len(truth.warnings)
    assert metrics["ade_f1"] > 0.0, f"the real extractors matched no ground-truth ADE: {metrics}"
