"""Scoring of `oncovigil eval e2e` without a server: truth files in the generator's format, read-back events."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_sync_kit import cli_env, run_cli

from adapters import RecordedAdverseEvent
from cds.errors import CohortError
from cds.eval_e2e import E2ePredictions, prediction_keys, read_truth, score


def _ade(drug: str, rxnorm: str, term: str, grade: int | None, negated: bool = False) -> dict[str, object]:
    return {"drug": drug, "rxnorm": rxnorm, "event": term.lower(), "ctcae_term": term, "meddra_code": "1",
            "grade": grade, "negated": negated, "drug_span": [0, 1], "event_span": [2, 3],
            "medication_request_id": None}


def _write_truth(folder: Path) -> Path:
    notes = [
        {"note_id": "n1", "patient_id": "p1", "date": "2026-01-02", "kind": "progress", "text": "...",
         "ades": [_ade("cisplatin", "2555", "Nausea", 2), _ade("cisplatin", "2555", "Diarrhea", None, True)],
         "toxicities": {}, "combinations": []},
        {"note_id": "n2", "patient_id": "p2", "date": "2026-01-03", "kind": "radiotherapy", "text": "...",
         "ades": [_ade("paclitaxel", "56946", "Peripheral sensory neuropathy", 3)],
         "toxicities": {"fatigue": {"status": "present", "grade": 1}, "proctitis": {"status": "absent", "grade": None}},
         "combinations": []},
    ]
    over = [{"patient_id": "p1", "medication_request_id": "mr-1", "drug": "cisplatin", "rxnorm": "2555",
             "reason": "duplicate_therapy"},
            {"patient_id": "p2", "medication_request_id": "mr-9", "drug": "ondansetron", "rxnorm": "26225",
             "reason": "no_indication"}]
    (folder / "notes.jsonl").write_text("".join(json.dumps(n) + "\n" for n in notes))
    (folder / "overprescriptions.jsonl").write_text("".join(json.dumps(o) + "\n" for o in over))
    return folder / "notes.jsonl"


def _event(
    key: str, patient: str, rxnorm: str | None, display: str, term: str, grade: int | None
) -> RecordedAdverseEvent:
    return RecordedAdverseEvent(
        id=key, patient_id=patient, drug_rxnorm=rxnorm, drug_display=display, ctcae_term=term, meddra_code=None,
        grade=grade, date=None, note_id=None, medication_request_id=None, finding_key=key, serious=None,
        severity=None, generated_by_oncovigil=True,
    )


def test_truth_keeps_non_negated_ades_present_toxicities_and_warnings(tmp_path: Path) -> None:
    truth = read_truth(_write_truth(tmp_path))
    assert truth.patients == {"p1", "p2"}
    assert truth.ades == {("p1", "2555", "nausea", 2), ("p2", "56946", "peripheral sensory neuropathy", 3)}
    assert truth.toxicities == {("p2", "fatigue", 1)}
    assert truth.warnings == {("p1", "mr-1"), ("p2", "mr-9")}
    assert read_truth(tmp_path) == truth  # the folder works as well as the file


def test_scores_count_matches_misses_and_ignore_other_patients(tmp_path: Path) -> None:
    truth = read_truth(_write_truth(tmp_path))
    events = [
        _event("ade-1", "p1", "2555", "cisplatin", "Nausea", 2),  # hit
        _event("ade-2", "p1", "2555", "cisplatin", "nausea", 2),  # the same finding in another note: counted once
        _event("ade-3", "p2", None, "Taxol", "Peripheral sensory neuropathy", 3),  # hit by brand name
        _event("ade-4", "p2", "56946", "paclitaxel", "Peripheral sensory neuropathy", 2),  # wrong grade
        _event("ade-5", "someone-else", "2555", "cisplatin", "Nausea", 2),  # not in the truth: not counted
        _event("tox-1", "p2", None, "radiotherapy", "Fatigue", 1),  # toxicity hit
        _event("x-1", "p1", "2555", "cisplatin", "Vomiting", 1),  # not ours (no ade-/tox- key): ignored
    ]
    metrics = score(truth, prediction_keys(events, [("p1", "mr-1"), ("p2", None), ("p3", "mr-3")]))
    assert (metrics["ade_true_positives"], metrics["ade_predicted"], metrics["ade_truth"]) == (2, 3, 2)
    assert (metrics["ade_precision"], metrics["ade_recall"], metrics["ade_f1"]) == (0.6667, 1.0, 0.8)
    assert (metrics["warning_true_positives"], metrics["warning_predicted"], metrics["warning_truth"]) == (1, 2, 2)
    assert metrics["toxicity_f1"] == 1.0
    assert metrics["patients"] == 2


def test_nothing_predicted_scores_zero_not_an_error(tmp_path: Path) -> None:
    metrics = score(read_truth(_write_truth(tmp_path)), E2ePredictions(frozenset(), frozenset(), frozenset()))
    assert metrics["ade_precision"] == metrics["ade_recall"] == metrics["ade_f1"] == 0.0
    assert metrics["warning_f1"] == 0.0 and metrics["warning_truth"] == 2


def test_a_malformed_truth_file_is_a_coded_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jsonl"
    bad.write_text('{"note_id": "n1"}\n')
    with pytest.raises(CohortError, match="OV-0046"):
        read_truth(bad)
    bad.write_text("not json\n")
    with pytest.raises(CohortError, match="OV-0046"):
        read_truth(bad)
    with pytest.raises(CohortError, match="OV-0045"):
        read_truth(tmp_path / "missing.jsonl")


def test_cli_refuses_bad_input_with_exit_code_2(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    missing = run_cli(["eval", "e2e", "--truth", str(tmp_path / "nope.jsonl"), "--json"], env, timeout=120)
    assert missing.returncode == 2 and "OV-0045" in missing.stderr and missing.stdout == ""
    mixed = run_cli(["eval", "ade", "--truth", str(tmp_path / "nope.jsonl")], env, timeout=120)
    assert mixed.returncode == 2 and "OV-0018" in mixed.stderr


def test_cli_reports_an_unreachable_server_with_exit_code_1(tmp_path: Path) -> None:
    from cds.sandbox import free_port

    truth = _write_truth(tmp_path)
    env = cli_env(tmp_path, fhir_max_retries="0")
    done: subprocess.CompletedProcess[str] = run_cli(
        ["eval", "e2e", "--truth", str(truth), "--url", f"http://127.0.0.1:{free_port()}/fhir", "--json"],
        env, timeout=120,
    )
    assert done.returncode == 1 and done.stderr.startswith("oncovigil: OV-1"), done.stderr
    assert done.stdout == ""
