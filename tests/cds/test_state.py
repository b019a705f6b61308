"""The state store, run once on SQLite and once on a real PostgreSQL (``state_url`` in conftest.py).

Two ``StateStore`` instances on one URL stand for two replicas; the concurrency tests race threads, each with
its own store (own engine, own connections), through a barrier so that they really overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from cds.errors import ConfigError, SyncError
from cds.state import JtiRow, LeaseRow, StateStore, normalise_url, utcnow

RACERS = 8


@pytest.fixture
def stores(state_url: str) -> Iterator[Callable[[], StateStore]]:
    """Makes stores on the test's database and closes them all at the end."""
    made: list[StateStore] = []

    def make() -> StateStore:
        made.append(StateStore(state_url))
        return made[-1]

    yield make
    for store in made:
        store.close()


def _race(stores: list[StateStore], action: Callable[[StateStore, int], bool]) -> list[bool]:
    barrier = threading.Barrier(len(stores))

    def run(i: int) -> bool:
        barrier.wait()
        return action(stores[i], i)

    with ThreadPoolExecutor(len(stores)) as pool:
        return list(pool.map(run, range(len(stores))))


def test_watermark_only_moves_forward(stores: Callable[[], StateStore]) -> None:
    store = stores()
    assert store.get_watermark("DocumentReference") is None
    store.set_watermark("DocumentReference", "2026-01-02T00:00:00Z")
    store.set_watermark("DocumentReference", "2025-01-01T00:00:00Z")
    assert store.get_watermark("DocumentReference") == "2026-01-02T00:00:00Z"
    store.reset_watermarks()
    assert store.get_watermark("DocumentReference") is None


def test_findings_upsert_is_idempotent(stores: Callable[[], StateStore]) -> None:
    store = stores()
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
    assert store.upsert_findings([{**row, "payload": {"grade": 3}}]) == 0
    [found] = store.findings(kind="ade", patient_id="p")
    assert (found.key, found.payload, found.written) == ("k1", {"grade": 3}, 0)
    store.mark_written(["k1"])
    assert store.findings(unwritten_only=True) == []
    assert store.finding_drugs_since("ade", None) == {"2555"}
    store.replace_note_findings("n", "ade", [])
    assert store.findings() == []


def test_a_written_finding_its_note_lost_waits_for_withdrawal(stores: Callable[[], StateStore]) -> None:
    """A re-read note that no longer states a written finding keeps it as pending (readers no longer see it)
    until the server confirmed the withdrawal; an unwritten one just goes; one found again is a finding again."""
    store = stores()
    base = {"kind": "ade", "patient_id": "p", "note_id": "n", "payload": {}, "model": "m@1"}
    drugs = (("written", "2555"), ("unwritten", "3002"), ("kept", "42"))
    rows = [{**base, "key": key, "drug_rxnorm": drug} for key, drug in drugs]
    store.replace_note_findings("n", "ade", rows, withdraw_lost=True)
    store.mark_written(["written", "kept"])

    store.replace_note_findings("n", "ade", [rows[2]], withdraw_lost=True)  # the amended note states only "kept"
    assert [r.key for r in store.findings()] == ["kept"]
    assert store.finding_drugs_since("ade", None) == {"42"}
    assert [r.key for r in stores().pending_withdrawals(["ade"])] == ["written"]  # another replica sees it too
    assert stores().pending_withdrawals(["toxicity"]) == []

    store.replace_note_findings("n", "ade", [rows[2]], withdraw_lost=True)  # read again before the withdrawal
    assert [r.key for r in store.pending_withdrawals(["ade"])] == ["written"]
    store.forget_findings(["written", "kept"])  # only pending rows can be forgotten
    assert store.pending_withdrawals(["ade"]) == [] and [r.key for r in store.findings()] == ["kept"]

    store.replace_note_findings("n", "ade", [rows[0], rows[2]], withdraw_lost=True)
    store.mark_written(["written"])
    store.replace_note_findings("n", "ade", [rows[2]], withdraw_lost=True)
    store.replace_note_findings("n", "ade", rows[:1] + rows[2:], withdraw_lost=True)  # found again: a finding
    assert sorted(r.key for r in store.findings()) == ["kept", "written"]
    assert store.pending_withdrawals(["ade"]) == []
    store.replace_note_findings("n", "ade", [])  # without withdraw_lost (kinds not written as resources)
    assert store.findings() == [] and store.pending_withdrawals(["ade"]) == []


def test_processed_inputs_are_remembered_per_task_and_version(stores: Callable[[], StateStore]) -> None:
    store = stores()
    store.mark_processed("ade", "v1", [("DocumentReference/1", "h1")])
    store.mark_processed("ade", "v1", [("DocumentReference/1", "h2")])
    assert store.processed_hash("ade", "v1", "DocumentReference/1") == "h2"
    assert store.processed_hash("ade", "v2", "DocumentReference/1") is None


def test_jti_replay_is_refused_across_store_instances(stores: Callable[[], StateStore]) -> None:
    a, b = stores(), stores()
    assert a.remember_jti("https://ehr", "j1", 3600)
    assert not b.remember_jti("https://ehr", "j1", 3600)
    assert not a.remember_jti("https://ehr", "j1", 3600)
    assert b.remember_jti("https://ehr", "j2", 3600)
    assert b.remember_jti("https://other-ehr", "j1", 3600)  # a jti is unique per issuer only


def test_an_expired_jti_is_purged_and_may_be_used_again(stores: Callable[[], StateStore]) -> None:
    store = stores()
    assert store.remember_jti("https://ehr", "old", 3600)
    assert store.remember_jti("https://ehr", "keep", 3600)
    with store.session() as s:
        s.execute(update(JtiRow).where(JtiRow.jti == "old").values(expires_at=utcnow() - timedelta(seconds=1)))
    assert store.remember_jti("https://ehr", "new", 3600)  # purges "old" on the way
    with store.session() as s:
        assert sorted(s.scalars(select(JtiRow.jti))) == ["keep", "new"]
    assert store.remember_jti("https://ehr", "old", 3600)


def test_concurrent_replays_of_one_jti_let_exactly_one_through(stores: Callable[[], StateStore]) -> None:
    racers = [stores() for _ in range(RACERS)]
    for attempt in range(3):  # a few rounds: one lucky interleaving proves little
        jti = f"race-{attempt}"
        results = _race(racers, lambda store, _i, jti=jti: store.remember_jti("https://ehr", jti, 3600))
        assert results.count(True) == 1, results


def test_lease_is_exclusive_until_released(stores: Callable[[], StateStore]) -> None:
    a, b = stores(), stores()
    assert a.acquire_lease("sync", "replica-a", 60)
    assert not b.acquire_lease("sync", "replica-b", 60)
    assert a.acquire_lease("sync", "replica-a", 60)  # the holder renews
    b.release_lease("sync", "replica-b")  # not the holder: nothing happens
    assert a.lease_holder("sync") == "replica-a"
    a.release_lease("sync", "replica-a")
    assert a.lease_holder("sync") is None
    assert b.acquire_lease("sync", "replica-b", 60)


def test_an_expired_lease_goes_to_the_next_caller_and_is_purged(stores: Callable[[], StateStore]) -> None:
    a, b = stores(), stores()
    assert a.acquire_lease("sync", "replica-a", 60)
    assert a.acquire_lease("other", "replica-a", 60)
    with a.session() as s:
        s.execute(update(LeaseRow).where(LeaseRow.name == "sync").values(expires_at=utcnow() - timedelta(seconds=1)))
    assert b.acquire_lease("sync", "replica-b", 60)
    assert b.lease_holder("sync") == "replica-b"
    with a.session() as s:
        s.execute(update(LeaseRow).where(LeaseRow.name == "sync").values(expires_at=utcnow() - timedelta(seconds=1)))
    assert a.purge_expired_leases() == 1
    assert (a.lease_holder("sync"), a.lease_holder("other")) == (None, "replica-a")


def test_take_over_names_the_dead_holder(stores: Callable[[], StateStore]) -> None:
    a, b = stores(), stores()
    assert a.acquire_lease("sync", "host:1", 60)
    assert not b.take_over_lease("sync", "host:2", "host:3", 60)  # not the holder it claims is dead
    assert b.take_over_lease("sync", "host:1", "host:3", 60)
    assert not a.take_over_lease("sync", "host:1", "host:4", 60)  # someone else got it first
    assert a.lease_holder("sync") == "host:3"
    assert not b.take_over_lease("missing", "host:1", "host:3", 60)


def test_concurrent_lease_requests_grant_exactly_one(stores: Callable[[], StateStore]) -> None:
    racers = [stores() for _ in range(RACERS)]
    for attempt in range(3):
        name = f"lease-{attempt}"
        results = _race(racers, lambda store, i, name=name: store.acquire_lease(name, f"replica-{i}", 60))
        assert results.count(True) == 1, results
        winner = results.index(True)
        assert racers[0].lease_holder(name) == f"replica-{winner}"


def test_concurrent_requests_for_an_expired_lease_grant_exactly_one(stores: Callable[[], StateStore]) -> None:
    racers = [stores() for _ in range(RACERS)]
    assert racers[0].acquire_lease("sync", "dead-replica", 60)
    with racers[0].session() as s:
        s.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    results = _race(racers, lambda store, i: store.acquire_lease("sync", f"replica-{i}", 60))
    assert results.count(True) == 1, results


def test_a_claim_is_granted_once_even_to_its_holder_until_it_expires(stores: Callable[[], StateStore]) -> None:
    racers = [stores() for _ in range(RACERS)]
    results = _race(racers, lambda store, i: store.claim_once("slot@02:00", f"replica-{i}", 60))
    assert results.count(True) == 1, results
    winner = f"replica-{results.index(True)}"
    assert not racers[0].claim_once("slot@02:00", winner, 60)
    with racers[0].session() as s:
        s.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert racers[1].claim_once("slot@02:00", "replica-1", 60)


def test_run_records_and_feedback_counts(stores: Callable[[], StateStore]) -> None:
    store = stores()
    run = store.start_run("sync")
    assert [(r.id, r.status, r.ended_at) for r in store.runs()] == [(run, "running", None)]
    store.finish_run(run, "ok", {"DocumentReference": 3}, [])
    [record] = store.runs()
    assert (record.counts, record.status) == ({"DocumentReference": 3}, "ok")
    assert record.ended_at is not None and record.ended_at.tzinfo is not None
    stale = store.start_run("sync")
    assert store.close_interrupted_runs("sync") == 1
    assert store.runs()[0].id == stale and store.runs()[0].status == "interrupted"
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


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://ov:p%40ss@db:5432/ov", "postgresql+psycopg://ov:p%40ss@db:5432/ov"),
        ("postgres://ov@db/ov", "postgresql+psycopg://ov@db/ov"),
        ("postgresql+psycopg://ov@db/ov", "postgresql+psycopg://ov@db/ov"),
        ("sqlite:////var/lib/oncovigil/state.db", "sqlite:////var/lib/oncovigil/state.db"),
    ],
)
def test_database_urls_are_normalised_to_the_shipped_driver(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


@pytest.mark.parametrize("url", ["mysql://ov@db/ov", "not a url"])
def test_unsupported_database_urls_are_refused_with_a_code(url: str) -> None:
    with pytest.raises(SyncError, match="OV-0076") as caught:
        normalise_url(url)
    assert isinstance(caught.value, ConfigError)  # the user's setting: the CLI exits 2
