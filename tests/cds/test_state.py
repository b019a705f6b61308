from pathlib import Path

from cds.state import StateStore


def _store(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_watermark_only_moves_forward(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.get_watermark("DocumentReference") is None
    store.set_watermark("DocumentReference", "2026-01-02T00:00:00Z")
    store.set_watermark("DocumentReference", "2025-01-01T00:00:00Z")
    assert store.get_watermark("DocumentReference") == "2026-01-02T00:00:00Z"


def test_findings_upsert_is_idempotent(tmp_path: Path) -> None:
    store = _store(tmp_path)
    row = {
        "key": "k1",
        "kind": "ade",
        "patient_id": "p",
        "note_id": "n",
        "drug_rxnorm": "2555",
        "payload": {"grade": 2},
        "model": "ade-extractor.v1",
    }
    assert store.upsert_findings([row]) == 1
    assert store.upsert_findings([row]) == 0
    assert [f.key for f in store.findings(kind="ade", patient_id="p")] == ["k1"]


def test_jti_replay_is_refused_across_store_instances(tmp_path: Path) -> None:
    a, b = _store(tmp_path), _store(tmp_path)
    assert a.remember_jti("https://ehr", "j1", 3600)
    assert not b.remember_jti("https://ehr", "j1", 3600)
    assert b.remember_jti("https://ehr", "j2", 3600)


def test_lease_is_exclusive_until_released(tmp_path: Path) -> None:
    a, b = _store(tmp_path), _store(tmp_path)
    assert a.acquire_lease("sync", "replica-a", 60)
    assert not b.acquire_lease("sync", "replica-b", 60)
    a.release_lease("sync", "replica-a")
    assert b.acquire_lease("sync", "replica-b", 60)


def test_run_records_and_feedback_counts(tmp_path: Path) -> None:
    store = _store(tmp_path)
    run = store.start_run("sync")
    store.finish_run(run, "ok", {"DocumentReference": 3}, [])
    assert store.runs()[0].counts == {"DocumentReference": 3}
    store.log_cards("oncovigil-order-sign", "p1", [("u1", "overprescription")])
    store.add_feedback(
        [
            {
                "service_id": "oncovigil-order-sign",
                "card_uuid": "u1",
                "outcome": "overridden",
                "override_code": "not-applicable",
                "override_display": "Not applicable",
                "user_comment": None,
                "accepted_suggestions": [],
                "outcome_ts": None,
            }
        ]
    )
    assert store.feedback_counts() == {"oncovigil-order-sign/overprescription": {"overridden": 1}}
