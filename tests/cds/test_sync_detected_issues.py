"""Overprescription DetectedIssues written and withdrawn by the sync, against the live sandbox (rules only).

The seeded cohort plus one patient of this module's own (ids unique per run, so a long-lived server works):
ondansetron, then granisetron a week later (duplicate 5-HT3 therapy), and paclitaxel after a recorded grade 3
neuropathy on paclitaxel (prior serious ADE), and a DetectedIssue of another system that must stay untouched.
The tests run in order on one state database. The models directory is empty, so the recommender is absent and
the warnings come from the rules alone (what a fresh checkout has); the extractors are absent too, which
leaves the notes to the watermark and makes these syncs fast: only the orders step runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_sync_kit import cli_env, run_cli

from adapters import (
    AdverseEventInput,
    DetectedIssueInput,
    FhirClient,
    FhirClientConfig,
    MedicationOrder,
    Note,
    RecordedDetectedIssue,
    fetch_detected_issues,
    write_adverse_events,
)
from adapters.identifiers import SID_PROVENANCE
from cds.assessor import RULES, RULES_VERSION, build_assessor_hook
from cds.decisions import OrderWarning
from cds.extraction import LoadedExtractors
from cds.findings_map import ade_inputs
from cds.formulary import default_formulary
from cds.issue_sync import IssueAuthor, issue_inputs, issue_key, plan_patient, visit_groups
from cds.settings import Settings, load_settings
from cds.state import WITHDRAWAL_PENDING, StateStore
from cds.sync import SyncJob, SyncOptions, SyncReport
from models import AdeFinding

RUN = uuid.uuid4().hex[:8]
PATIENT = f"ov-test-di-{RUN}"
MR_ONDANSETRON, MR_GRANISETRON, MR_PACLITAXEL = (f"{PATIENT}-mr-{n}" for n in ("ond", "gra", "pac"))
OTHER_SYSTEM = "https://other-cds.example.org/sid/alerts"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DUPLICATE_KEY = issue_key(PATIENT, "granisetron", ["duplicate_therapy"])
PRIOR_ADE_KEY = issue_key(PATIENT, "paclitaxel", ["prior_serious_ade"])
AUTHORED = {
    MR_ONDANSETRON: "2025-03-03T09:30:00+00:00",
    MR_GRANISETRON: "2025-03-10T09:30:00+00:00",
    MR_PACLITAXEL: "2025-03-17T09:30:00+00:00",
}


# -- pure parts (no server) ---------------------------------------------------------------------------------


def _order(oid: str, drug: str, status: str, authored: str | None) -> MedicationOrder:
    return MedicationOrder(
        id=oid,
        patient_id="p",
        encounter_id=None,
        rxnorm_code=None,
        display=drug,
        ingredient=drug,
        status=status,
        intent="order",
        authored_on=datetime.fromisoformat(authored) if authored else None,
        dosage_text=None,
        requester=None,
        last_updated=None,
    )


def test_orders_are_judged_by_the_day_their_drug_began_against_drugs_begun_earlier() -> None:
    orders = [
        _order("c", "granisetron", "active", "2025-01-08T10:00:00+00:00"),
        _order("a0", "ondansetron", "completed", "2024-12-25T10:00:00+00:00"),  # the course began here
        _order("a", "ondansetron", "active", "2025-01-15T10:00:00+00:00"),  # re-ordered: same course
        _order("b", "paclitaxel", "active", "2025-01-01T11:00:00+00:00"),
        _order("x0", "cisplatin", "stopped", "2024-12-01T10:00:00+00:00"),
        _order("x", "cisplatin", "active", "2025-01-01T10:00:00+00:00"),  # after a stop: a new course
        _order("n", "loperamide", "active", None),
    ]
    grouped = visit_groups(orders, lambda o: o.display or "")
    groups = [([d.id for d in drafts], [e.id for e in earlier]) for drafts, earlier in grouped]
    assert groups == [
        (["a"], []),
        (["x", "b"], ["a"]),
        (["c"], ["a", "x", "b"]),
        (["n"], ["a", "x", "b", "c"]),
    ]


def test_one_issue_per_drug_and_reason_set_with_a_deterministic_key_and_date() -> None:
    author = IssueAuthor(RULES, RULES_VERSION)
    first = _order("m1", "granisetron", "active", "2025-01-08T10:00:00+00:00")
    second = _order("m2", "granisetron", "active", "2025-01-15T10:00:00+00:00")
    dup = OrderWarning("m1", "granisetron", ("ondansetron is also ordered",), float("nan"), ("duplicate_therapy",))
    items = issue_inputs("p", [(dup, first), (dup, second)], default_formulary(), author)
    [item] = items
    assert item.key == "overrx-p-granisetron-duplicate_therapy"
    assert (item.medication_request_id, item.also_implicated) == ("m1", ("m2",))
    assert item.identified == first.authored_on and item.severity == "moderate" and item.score is None
    assert "ondansetron is also ordered" in item.detail
    assert issue_inputs("p", [(dup, second), (dup, first)], default_formulary(), author) == items
    long_a, long_b = issue_key("p", "x" * 300 + "a", ["low_score"]), issue_key("p", "x" * 300 + "b", ["low_score"])
    assert long_a != long_b and long_a.startswith("overrx-") and len(long_a) <= 200


def test_the_nightly_assessment_reads_the_stored_tumour_phenotype(tmp_path: Path) -> None:
    """A pathology note said HER2-negative: trastuzumab ordered later is a biomarker mismatch (moderate)."""
    from adapters import Note, PatientContext
    from adapters.records import ConditionRecord
    from cds.assessor import stored_phenotype
    from cds.phenotype_map import phenotype_inputs
    from cds.recommender_assessor import RecommenderAssessor
    from models.phenotype import Phenotype
    from models.phenotype.records import PhenotypeField

    text = "Invasive ductal carcinoma of the left breast. HER2 negative (IHC 1+)."
    note = Note("n1", "p", None, datetime(2025, 2, 1, tzinfo=UTC), None, None, "current", text, "1", None)
    fields = (
        PhenotypeField("diagnosis", "breast cancer", "Invasive ductal carcinoma", (0, 25), 0.98, False),
        PhenotypeField("her2", "negative", "HER2 negative (IHC 1+)", (46, 68), 0.97, False),
    )
    _, rows = phenotype_inputs(note, Phenotype(fields), ("phenotype-extractor.v1", "1"))
    store = StateStore(f"sqlite:///{tmp_path}/state.db")
    store.replace_note_findings(note.id, "phenotype", rows)
    assert stored_phenotype(store)("p") == ["breast cancer", "HER2-negative"]
    breast = ConditionRecord("c1", "254837009", None, "Malignant neoplasm of breast (disorder)", "active", None, None)
    context = PatientContext(patient_id="p", age=58, sex="female", conditions=[breast])
    order = _order("m9", "trastuzumab", "active", "2025-03-01T10:00:00+00:00")
    assessor = RecommenderAssessor(None, default_formulary(), stored_phenotype(store))
    [warning] = asyncio.run(assessor.assess(context, [order], []))
    assert warning.kinds[0] == "biomarker_mismatch"
    [item] = issue_inputs("p", [(warning, order)], default_formulary(), IssueAuthor(RULES, RULES_VERSION))
    assert item.severity == "moderate" and item.key.startswith("overrx-p-trastuzumab-biomarker_mismatch")
    assert "HER2-negative" in item.detail
    store.close()


def _recorded(key: str | None, status: str = "final") -> RecordedDetectedIssue:
    return RecordedDetectedIssue(
        id=f"id-{key}",
        key=key,
        patient_id="p",
        status=status,
        code="overprescription",
        severity="moderate",
        identified=None,
        medication_request_ids=("m1",),
        detail="d",
        score=None,
    )


def test_only_our_standing_overprescription_warnings_are_withdrawn() -> None:
    item = DetectedIssueInput(
        key="overrx-p-a-low_score",
        patient_id="p",
        medication_request_id="m1",
        drug_rxnorm=None,
        drug_display="a",
        severity="moderate",
        detail="d",
        identified=datetime(2025, 1, 1, tzinfo=UTC),
        model_name="m",
        model_version="1",
    )
    ours = [
        _recorded("overrx-p-a-low_score"),  # still produced: kept (rewritten: its date differs)
        _recorded("overrx-p-b-duplicate_therapy"),  # no longer produced: withdrawn
        _recorded("overrx-p-c-duplicate_therapy", status="cancelled"),  # already withdrawn: left
        _recorded("adapter-test-key"),  # ours, but not an overprescription warning of the sync: left
    ]
    plan = plan_patient("p", [item], ours)
    assert [r.key for r in plan.withdraw] == ["overrx-p-b-duplicate_therapy"]
    assert [i.key for i in plan.write] == [item.key] and plan.unchanged == ()
    same = RecordedDetectedIssue(
        id="x",
        key=item.key,
        patient_id="p",
        status="final",
        code="overprescription",
        severity="moderate",
        identified=item.identified,
        medication_request_ids=("m1",),
        detail="d",
        score=None,
    )
    assert plan_patient("p", [item], [same]).unchanged == (item.key,)
    assert plan_patient("p", [item], [same]).write == ()


def test_e2e_counts_only_our_standing_warnings() -> None:
    from dataclasses import replace

    from cds.eval_e2e import warning_keys

    standing = _recorded("overrx-p-a-duplicate_therapy")
    issues = [
        standing,
        replace(standing, id="2", status="cancelled"),  # withdrawn
        replace(standing, id="3", status="entered-in-error"),
        replace(standing, id="4", key=None),  # another system's
        replace(standing, id="5", medication_request_ids=()),
    ]
    assert warning_keys(issues) == [("p", "m1"), ("p", None)]


# -- against the sandbox ------------------------------------------------------------------------------------


@dataclass
class IssueSandbox:
    base_url: str
    truth_dir: Path
    settings: Settings
    store: StateStore
    reports: list[SyncReport] = field(default_factory=list)

    def sync(self, since: datetime | None = None) -> SyncReport:
        async def go(client: FhirClient) -> SyncReport:
            hook = build_assessor_hook(self.settings, self.store)
            no_extractors = LoadedExtractors({}, {}, [])
            return await SyncJob(self.store, client, no_extractors, SyncOptions(since=since), on_orders=hook).run()

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.INFO)  # log calls with a bad `extra` only fail when enabled
        try:
            report: SyncReport = self.server(go)
        finally:
            root.setLevel(level)
        self.reports.append(report)
        return report

    def server(self, fn: Any) -> Any:
        async def go() -> Any:
            async with FhirClient(FhirClientConfig(base_url=self.base_url, read_timeout_s=120.0)) as client:
                return await fn(client)

        return asyncio.run(go())

    def ours(self, patient: str) -> dict[str, RecordedDetectedIssue]:
        issues: list[RecordedDetectedIssue] = self.server(lambda c: fetch_detected_issues(c, patient))
        return {i.key: i for i in issues if i.key}


def _med_request(mid: str, drug: str, rxnorm: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm, "display": drug}], "text": drug},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": AUTHORED[mid],
    }


def _put(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
        ],
    }


def _patient_bundle() -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": PATIENT, "gender": "female", "birthDate": "1961-05-02"}
    condition = {
        "resourceType": "Condition",
        "id": f"{PATIENT}-cond",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"text": "Malignant neoplasm of breast"},
    }
    other = {
        "resourceType": "DetectedIssue",
        "id": f"{PATIENT}-other",
        "status": "final",
        "identifier": [{"system": OTHER_SYSTEM, "value": f"alert-{RUN}"}],
        "patient": {"reference": f"Patient/{PATIENT}"},
        "implicated": [{"reference": f"MedicationRequest/{MR_GRANISETRON}"}],
        "detail": "another system's alert",
    }
    return _put(
        patient,
        condition,
        _med_request(MR_ONDANSETRON, "ondansetron", "26225", "active"),
        _med_request(MR_GRANISETRON, "granisetron", "26237", "active"),
        _med_request(MR_PACLITAXEL, "paclitaxel", "56946", "active"),
        other,
    )


def _prior_neuropathy() -> AdverseEventInput:
    return AdverseEventInput(
        finding_key=f"test-di-{RUN}-neuropathy",
        patient_id=PATIENT,
        note_id=None,
        drug_rxnorm="56946",
        drug_display="paclitaxel",
        medication_request_id=None,
        ctcae_term="Peripheral sensory neuropathy",
        meddra_code="10034620",
        grade=3,
        date=datetime(2025, 2, 20, tzinfo=UTC),
        evidence_text=None,
        model_name="test-recorder",
        model_version="1",
    )


@pytest.fixture(scope="module")
def issues(seeded_sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssueSandbox]:
    home = tmp_path_factory.mktemp("issue-home")
    empty_models = home / "no-models"
    empty_models.mkdir()
    settings = load_settings(
        home=home,
        fhir_base_url=seeded_sandbox.base_url,
        models_dir=empty_models,
        state_db_url=f"sqlite:///{home}/state.db",
        fhir_read_timeout_s=120.0,
    )
    store = StateStore(str(settings.state_db_url))
    state = IssueSandbox(seeded_sandbox.base_url, seeded_sandbox.truth_dir, settings, store)
    state.server(lambda c: c.transaction(_patient_bundle()))
    written = state.server(lambda c: write_adverse_events(c, [_prior_neuropathy()]))
    assert not written.failures
    state.sync()
    yield state
    store.close()


def _other_system_issue(state: IssueSandbox) -> dict[str, Any]:
    resource: dict[str, Any] = state.server(lambda c: c.read("DetectedIssue", f"{PATIENT}-other"))
    return resource


def test_first_sync_warns_about_the_duplicate_and_the_drug_of_a_prior_serious_ade(issues: IssueSandbox) -> None:
    first = issues.reports[0]
    assert first.status == "ok", first.errors
    assert first.counts["DetectedIssue_written"] >= 2 and first.counts["overprescription_patients_assessed"] >= 1
    ours = issues.ours(PATIENT)
    assert set(ours) == {DUPLICATE_KEY, PRIOR_ADE_KEY}, "ondansetron, the first 5-HT3 antagonist, is not warned"
    duplicate, prior = ours[DUPLICATE_KEY], ours[PRIOR_ADE_KEY]
    assert duplicate.status == prior.status == "final" and duplicate.code == prior.code == "overprescription"
    assert duplicate.medication_request_ids == (MR_GRANISETRON,) and prior.medication_request_ids == (MR_PACLITAXEL,)
    assert duplicate.identified == datetime.fromisoformat(AUTHORED[MR_GRANISETRON])
    assert prior.identified == datetime.fromisoformat(AUTHORED[MR_PACLITAXEL])
    assert (duplicate.severity, prior.severity) == ("moderate", "high")
    assert duplicate.detail and "ondansetron" in duplicate.detail
    assert prior.detail and "grade 3 peripheral sensory neuropathy" in prior.detail
    for issue in (duplicate, prior):
        provenances = issues.server(lambda c, i=issue: _search(c, "Provenance", [("target", f"DetectedIssue/{i.id}")]))
        assert len(provenances) == 1
        device = issues.server(lambda c, p=provenances[0]: c.read(*p["agent"][0]["who"]["reference"].split("/")))
        assert device["deviceName"][0]["name"] == f"OncoVigil {RULES}" and device["version"][0]["value"] == "1"


async def _search(client: FhirClient, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [r async for r in client.search(rtype, params)]


def _standing(issues: IssueSandbox, patient: str, request: str) -> list[RecordedDetectedIssue]:
    return [i for i in issues.ours(patient).values() if not i.withdrawn and request in i.medication_request_ids]


def _set_status(issues: IssueSandbox, request: str, status: str) -> None:
    async def go(client: FhirClient) -> None:
        resource = await client.read("MedicationRequest", request)
        await client.update({**resource, "status": status})

    issues.server(go)


def test_planted_overprescriptions_of_the_seeded_cohort(issues: IssueSandbox) -> None:
    """Rules only: a planted duplicate still ordered is warned, and one the cohort stopped is warned once it is
    ordered again and withdrawn once stopped again; a planted order that is stopped has no standing warning; a
    planted missing indication needs the recommender's doubt, so it has none either."""
    truth = [json.loads(line) for line in (issues.truth_dir / "overprescriptions.jsonl").read_text().splitlines()]
    assert truth, "the seeded cohort has no planted overprescription"
    status = {
        r["medication_request_id"]: issues.server(
            lambda c, r=r: c.read("MedicationRequest", r["medication_request_id"])
        )["status"]
        for r in truth
    }
    stopped_duplicates = []
    for row in truth:
        patient, request = row["patient_id"], row["medication_request_id"]
        warned = _standing(issues, patient, request)
        if status[request] in ("stopped", "cancelled", "entered-in-error"):
            assert not warned, f"{row}: a stopped order has a standing warning"
            if row["reason"] == "duplicate_therapy":
                stopped_duplicates.append(row)
        elif row["reason"] == "duplicate_therapy":
            assert [i.medication_request_ids[0] for i in warned] == [request], row
            assert "duplicate_therapy" in (warned[0].key or "")
        elif row["reason"] == "no_indication":
            assert not warned, f"{row}: rules alone warned about a missing indication"
    checked = sum(1 for r in truth if r["reason"] == "duplicate_therapy")
    assert checked > 0, "the seeded cohort plants no duplicate therapy: nothing to check"
    # The seeded cohort (8 patients, seed 11) stops its planted granisetron duplicate: the re-order path runs.
    assert stopped_duplicates, "no planted duplicate was stopped: the re-order and withdrawal go unchecked"
    for row in stopped_duplicates:
        _set_status(issues, row["medication_request_id"], "active")
    again = issues.sync()
    assert again.status == "ok", again.errors
    assert again.counts["DetectedIssue_written"] == len(stopped_duplicates)
    for row in stopped_duplicates:
        warned = _standing(issues, row["patient_id"], row["medication_request_id"])
        assert [i.medication_request_ids[0] for i in warned] == [row["medication_request_id"]], row
        _set_status(issues, row["medication_request_id"], "stopped")  # the seeded state again
    restored = issues.sync()
    assert restored.counts["DetectedIssue_withdrawn"] == len(stopped_duplicates)
    assert not any(_standing(issues, r["patient_id"], r["medication_request_id"]) for r in stopped_duplicates)


def test_a_second_sync_and_a_backfill_write_nothing(issues: IssueSandbox) -> None:
    before = issues.ours(PATIENT)
    second = issues.sync()
    assert second.status == "ok", second.errors
    # the orders stamped at the watermark's instant are read again (the resume overlaps by 1 ms), nothing more
    assert second.counts.get("DetectedIssue_written", 0) == 0 and second.counts.get("DetectedIssue_withdrawn", 0) == 0
    # a backfill judges every patient again: everything already stands, nothing is sent
    backfill = issues.sync(since=datetime(2000, 1, 1, tzinfo=UTC))
    assert backfill.status == "ok", backfill.errors
    assert backfill.counts["overprescription_patients_assessed"] >= 1
    assert backfill.counts["DetectedIssue_written"] == 0 and backfill.counts["DetectedIssue_withdrawn"] == 0
    assert backfill.counts["DetectedIssue_unchanged"] == issues.reports[0].counts["overprescription_warnings"]
    assert issues.ours(PATIENT) == before  # same ids, versions and content


def test_stopping_the_duplicate_withdraws_its_warning_and_nothing_else(issues: IssueSandbox) -> None:
    other_before = _other_system_issue(issues)
    stopped = _med_request(MR_GRANISETRON, "granisetron", "26237", "stopped")
    issues.server(lambda c: c.transaction(_put(stopped)))
    report = issues.sync()
    assert report.status == "ok", report.errors
    assert report.counts["orders_pulled"] >= 1 and report.counts["overprescription_patients_assessed"] >= 1
    assert report.counts["DetectedIssue_withdrawn"] == 1 and report.counts["DetectedIssue_written"] == 0
    ours = issues.ours(PATIENT)
    assert ours[DUPLICATE_KEY].status == "cancelled" and ours[DUPLICATE_KEY].version_id == "2"
    assert ours[DUPLICATE_KEY].detail and ours[DUPLICATE_KEY].medication_request_ids == (MR_GRANISETRON,)
    assert ours[PRIOR_ADE_KEY].status == "final" and ours[PRIOR_ADE_KEY].version_id == "1"
    cancel = issues.server(lambda c: _search(c, "Provenance", [("target", f"DetectedIssue/{ours[DUPLICATE_KEY].id}")]))
    assert sorted(p["activity"]["coding"][0]["code"] for p in cancel) == ["CANCEL", "CREATE"]
    assert all(any(t["system"] == SID_PROVENANCE for t in p["meta"]["tag"]) for p in cancel)
    assert _other_system_issue(issues) == other_before  # another system's DetectedIssue: same version, same content
    assert issues.sync().counts.get("DetectedIssue_withdrawn", 0) == 0


def test_reordering_the_duplicate_raises_the_same_warning_again(issues: IssueSandbox) -> None:
    issues.server(lambda c: c.transaction(_put(_med_request(MR_GRANISETRON, "granisetron", "26237", "active"))))
    report = issues.sync()
    assert report.status == "ok", report.errors
    assert report.counts["DetectedIssue_written"] == 1 and report.counts["DetectedIssue_withdrawn"] == 0
    ours = issues.ours(PATIENT)
    assert ours[DUPLICATE_KEY].status == "final" and ours[DUPLICATE_KEY].version_id == "3"
    assert _other_system_issue(issues)["meta"]["versionId"] == "1"


def test_run_records_and_eval_e2e_count_the_warnings(issues: IssueSandbox) -> None:
    env = cli_env(issues.settings.home, state_db_url=str(issues.settings.state_db_url))
    listed = json.loads(run_cli(["runs", "--json", "--limit", "50"], env, timeout=120).stdout)
    by_id = {r["id"]: r for r in listed}
    for report in issues.reports:
        recorded = by_id[report.run_id]["counts"]
        assert recorded.get("DetectedIssue_written", 0) == report.counts.get("DetectedIssue_written", 0)
        assert recorded.get("DetectedIssue_withdrawn", 0) == report.counts.get("DetectedIssue_withdrawn", 0)
    done = run_cli(
        ["eval", "e2e", "--truth", str(issues.truth_dir / "notes.jsonl"), "--url", issues.base_url, "--json"],
        cli_env(issues.settings.home),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    truth = [json.loads(line) for line in (issues.truth_dir / "overprescriptions.jsonl").read_text().splitlines()]
    standing = {
        (p, i.medication_request_ids[0])
        for p in {r["patient_id"] for r in truth} | _truth_patients(issues.truth_dir)
        for i in issues.ours(p).values()
        if not i.withdrawn and i.medication_request_ids
    }
    assert metrics["warning_truth"] == len({(r["patient_id"], r["medication_request_id"]) for r in truth})
    assert metrics["warning_predicted"] == len(standing)
    expected_tp = len(standing & {(r["patient_id"], r["medication_request_id"]) for r in truth})
    assert metrics["warning_true_positives"] == expected_tp


def _truth_patients(truth_dir: Path) -> set[str]:
    lines = (truth_dir / "notes.jsonl").read_text().splitlines()
    return {json.loads(line)["patient_id"] for line in lines if line.strip()}


def test_withdrawing_the_adverse_event_withdraws_the_warning_resting_on_it(issues: IssueSandbox) -> None:
    """The prior neuropathy is found no more by its (amended) note: the sync withdraws the AdverseEvent and, in
    the same run and with none of the patient's orders changed, the paclitaxel warning that rested on it."""
    # another patient's order becomes the newest, so the watermark no longer re-reads this patient's orders
    bystander = f"{PATIENT}-bystander"
    order = {**_med_request(MR_ONDANSETRON, "ondansetron", "26225", "active"), "id": f"{bystander}-mr"}
    order["subject"] = {"reference": f"Patient/{bystander}"}
    issues.server(lambda c: c.transaction(_put({"resourceType": "Patient", "id": bystander}, order)))
    assert issues.sync().status == "ok"  # reads both patients' newest orders once more, then moves past them

    ade = _prior_neuropathy()
    issues.store.upsert_findings([{
        "key": ade.finding_key, "kind": "ade", "patient_id": PATIENT, "note_id": f"{PATIENT}-note",
        "drug_rxnorm": ade.drug_rxnorm, "payload": {"ctcae_term": ade.ctcae_term, "grade": ade.grade},
        "model": "test-recorder@1", "written": WITHDRAWAL_PENDING,  # what an amended note leaves (test_state.py)
    }])
    report = issues.sync()
    assert report.status == "ok", report.errors
    assert report.counts["AdverseEvent_withdrawn"] == 1
    assert report.counts["orders_pulled"] == 1 and report.counts["overprescription_patients_assessed"] == 2
    ours = issues.ours(PATIENT)
    assert ours[PRIOR_ADE_KEY].status == "cancelled" and ours[DUPLICATE_KEY].status == "final"
    assert report.counts["DetectedIssue_withdrawn"] == 1 and report.counts["DetectedIssue_written"] == 0
    assert issues.store.pending_withdrawals(["ade"]) == []
    again = issues.sync()
    assert again.counts.get("AdverseEvent_withdrawn", 0) == 0 and again.counts.get("DetectedIssue_withdrawn", 0) == 0
    assert again.counts["overprescription_patients_assessed"] == 1


def test_an_adverse_event_found_tonight_raises_the_warning_in_the_same_run(issues: IssueSandbox) -> None:
    """After the previous test the paclitaxel warning is cancelled. A note read tonight states the neuropathy
    again: the notes stage leaves its AdverseEvent on the server and its finding stored as written, and the same
    run warns about the paclitaxel order, with none of the patient's orders changed."""
    text = "Grade 3 peripheral sensory neuropathy on paclitaxel."
    note = Note(id=f"{PATIENT}-note-2", patient_id=PATIENT, encounter_id=None, date=datetime(2025, 2, 20, tzinfo=UTC),
                type_code="11506-3", type_display="Progress note", status="current", text=text, version_id="1",
                last_updated=None)
    document = {
        "resourceType": "DocumentReference", "id": note.id, "status": "current",
        "subject": {"reference": f"Patient/{PATIENT}"}, "date": "2025-02-20T10:00:00+00:00",
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}],
    }
    issues.server(lambda c: c.transaction(_put(document)))
    found = AdeFinding(drug="paclitaxel", drug_span=(41, 51), event="peripheral sensory neuropathy",
                       event_span=(8, 37), negated=False, grade=3, severity_word=None,
                       ctcae_term="Peripheral sensory neuropathy", meddra_code="10034620", confidence=0.97)
    events, rows = ade_inputs(note, [found], [], ("test-recorder", "1"))
    written = issues.server(lambda c: write_adverse_events(c, events))
    assert not written.failures and len(written.references) == 1
    issues.store.upsert_findings(rows)
    issues.store.mark_written([r["key"] for r in rows])  # what the notes stage leaves after the write
    report = issues.sync()
    assert report.status == "ok", report.errors
    assert report.counts["orders_pulled"] == 1, "only the bystander's order, at the watermark's instant"
    assert report.counts["overprescription_patients_assessed"] == 2
    assert report.counts["DetectedIssue_written"] == 1 and report.counts["DetectedIssue_withdrawn"] == 0
    ours = issues.ours(PATIENT)
    assert ours[PRIOR_ADE_KEY].status == "final" and ours[PRIOR_ADE_KEY].version_id == "3"
    assert ours[PRIOR_ADE_KEY].medication_request_ids == (MR_PACLITAXEL,)
    # assessed once: the next run finds nothing stored since
    again = issues.sync()
    assert again.counts["overprescription_patients_assessed"] == 1 and again.counts["DetectedIssue_written"] == 0
