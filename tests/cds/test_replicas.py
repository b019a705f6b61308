"""Two replicas of ``oncovigil serve`` on one PostgreSQL and the live sandbox, as in production.

Both answer CDS Hooks calls (discovery, and order-sign with the patient fetched from the sandbox); a JWT
whose ``jti`` one replica accepted is refused by the other (the replay store is the shared database); and
with the sync cron set to every minute, the scheduled sync of one minute runs exactly once although both
replicas' schedulers fire it (each claims the fire time in the database; the loser logs and returns).
Without models the sync only reads the sandbox, so it needs no ``oncovigil models build``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from sqlalchemy import select

from cds.demo_ehr import draft_medication_request, order_sign_body
from cds.runner import LEASE
from cds.sandbox import free_port
from cds.scheduling import JOB_ID, fire_time, job_arguments, nightly_sync, slot_lease, start_scheduler
from cds.settings import Settings, load_settings
from cds.state import LeaseRow, StateStore

ISSUER = "https://ehr.replicas.test"
SIGN = "oncovigil-order-sign"


class Ehr:
    """The EHR side: one ES384 key, pinned in OncoVigil's trusted-issuers file."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP384R1())

    def trusted_issuers(self) -> dict[str, Any]:
        jwk = ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update(kid="replicas", use="sig", alg="ES384")
        return {ISSUER: {"jwks": {"keys": [jwk]}}}

    def token(self, audiences: list[str], jti: str | None = None) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audiences, "iat": now, "exp": now + 300, "jti": jti or uuid.uuid4().hex}
        signed = jwt.encode(claims, self._key, algorithm="ES384", headers={"kid": "replicas", "typ": "JWT"})
        return f"Bearer {signed}"


@dataclass
class Replica:
    name: str
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def sign_url(self) -> str:
        return f"{self.base}/cds-services/{SIGN}"

    def log(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def _start(name: str, tmp_path: Path, env: dict[str, str]) -> Replica:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    home = tmp_path / name
    home.mkdir()
    log_path = home / "serve.log"
    replica_env = {**os.environ, **env, "ONCOVIGIL_HOME": str(home), "ONCOVIGIL_CDS_PUBLIC_BASE_URL": base}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "oncovigil"), "serve", "--port", str(port)],
            env=replica_env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    return Replica(name, base, process, log_path)


def _wait_ready(replica: Replica, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert replica.process.poll() is None, f"{replica.name} exited:\n{replica.log_path.read_text()[-3000:]}"
        try:
            if httpx.get(f"{replica.base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{replica.name} not ready in time:\n{replica.log_path.read_text()[-3000:]}")


@pytest.fixture
def replicas(pg_database: str, fhir_base_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica, Ehr]]:
    ehr = Ehr()
    issuers = tmp_path / "trusted_issuers.json"
    issuers.write_text(json.dumps(ehr.trusted_issuers()))
    (tmp_path / "no-models").mkdir()
    env = {
        "ONCOVIGIL_ENVIRONMENT": "test",
        "ONCOVIGIL_STATE_DB_URL": pg_database,
        "ONCOVIGIL_FHIR_BASE_URL": fhir_base_url,
        "ONCOVIGIL_FHIR_READ_TIMEOUT_S": "120",
        "ONCOVIGIL_MODELS_DIR": str(tmp_path / "no-models"),
        "ONCOVIGIL_ONNX_PROVIDERS": '["CPUExecutionProvider"]',
        "ONCOVIGIL_CDS_REQUIRE_JWT": "true",
        "ONCOVIGIL_CDS_TRUSTED_ISSUERS_FILE": str(issuers),
        "ONCOVIGIL_CDS_DECISION_TIMEOUT_S": "30",
        "ONCOVIGIL_SYNC_CRON": "* * * * *",
        "ONCOVIGIL_LOG_JSON": "true",
    }
    started = [_start("replica-a", tmp_path, env), _start("replica-b", tmp_path, env)]
    try:
        deadline = time.monotonic() + 120
        for replica in started:
            _wait_ready(replica, deadline)
        yield started[0], started[1], ehr
    finally:
        for replica in started:
            replica.process.terminate()
        for replica in started:
            try:
                replica.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(timeout=10)


def _sign_body(patient_id: str, fhir_base_url: str) -> dict[str, Any]:
    draft = draft_medication_request("draft-1", patient_id, "2555", "cisplatin")
    return order_sign_body(patient_id, [draft], fhir_base_url)  # no prefetch: fetched from the sandbox


def test_two_replicas_share_the_replay_store_and_run_the_nightly_job_once(
    replicas: tuple[Replica, Replica, Ehr], fhir_base_url: str, pg_database: str
) -> None:
    a, b, ehr = replicas
    # the scheduled minute under test: the first one both schedulers know about, with time to spare
    target = (datetime.now(UTC) + timedelta(seconds=63)).replace(second=0, microsecond=0)

    patient_id = f"ovt-replica-{uuid.uuid4().hex[:10]}"
    created = httpx.put(f"{fhir_base_url}/Patient/{patient_id}", timeout=60,
                        json={"resourceType": "Patient", "id": patient_id, "gender": "female",
                              "birthDate": "1960-05-01"})
    assert created.status_code in (200, 201), created.text

    for replica in (a, b):
        discovery_url = f"{replica.base}/cds-services"
        discovery = httpx.get(discovery_url, headers={"Authorization": ehr.token([discovery_url])}, timeout=30)
        assert discovery.status_code == 200
        assert SIGN in {s["id"] for s in discovery.json()["services"]}
        answer = httpx.post(replica.sign_url, json=_sign_body(patient_id, fhir_base_url), timeout=60,
                            headers={"Authorization": ehr.token([replica.sign_url])})
        assert answer.status_code == 200, (replica.name, answer.text)
        # a new patient with no recorded event and a single draft: no rule fires, on either replica
        assert answer.json() == {"cards": []}, replica.name

    # one token addressed to both replicas: valid on either, but only once
    jti = f"replay-{uuid.uuid4().hex}"
    token = ehr.token([a.sign_url, b.sign_url], jti=jti)
    first = httpx.post(a.sign_url, json=_sign_body(patient_id, fhir_base_url), headers={"Authorization": token},
                       timeout=60)
    assert first.status_code == 200, first.text
    replayed = httpx.post(b.sign_url, json=_sign_body(patient_id, fhir_base_url), headers={"Authorization": token},
                          timeout=60)
    assert replayed.status_code == 401, replayed.text
    rejections = [r for r in b.log() if r.get("jti") == jti and r["msg"].startswith("OV-3050")]
    assert [r["reason"] for r in rejections] == ["jti replayed"]

    # the nightly job, fired by both schedulers at `target`
    store = StateStore(pg_database)
    try:
        deadline = time.monotonic() + (target - datetime.now(UTC)).total_seconds() + 90
        while True:
            in_minute = [r for r in store.runs(50) if target <= r.started_at < target + timedelta(seconds=60)]
            if in_minute and all(r.ended_at for r in in_minute):
                break
            assert time.monotonic() < deadline, f"no finished sync run for {target:%H:%M}: {store.runs(5)}"
            time.sleep(1)
        time.sleep(5)  # a duplicate run would have started by now: the slot fired on both long ago
        in_minute = [r for r in store.runs(50) if target <= r.started_at < target + timedelta(seconds=60)]
        assert len(in_minute) == 1, in_minute
        assert in_minute[0].kind == "sync" and in_minute[0].status == "ok", in_minute[0]
        with store.session() as s:
            leases = {row.name: row.holder for row in s.scalars(select(LeaseRow))}
        assert LEASE not in leases  # released after the run
        holders = {leases[slot_lease(target)]}
        assert holders <= {f"{_host()}:{a.process.pid}", f"{_host()}:{b.process.pid}"}, leases
    finally:
        store.close()

    started_syncs = 0
    for replica in (a, b):
        records = replica.log()
        errors = [r for r in records if r["level"] in ("error", "critical")]
        assert errors == [], (replica.name, errors)
        assert any(r["msg"] == "scheduler started" for r in records)
        started_syncs += sum(r["msg"] == "sync started" and r["ts"][:16] == target.isoformat()[:16] for r in records)
    assert started_syncs == 1


def _host() -> str:
    import socket

    return socket.gethostname()


def _offline_settings(state_url: str, tmp_path: Path) -> Settings:
    now = datetime.now(UTC)
    (tmp_path / "no-models").mkdir(exist_ok=True)
    return load_settings(
        home=tmp_path, state_db_url=state_url, models_dir=tmp_path / "no-models",
        fhir_base_url=f"http://127.0.0.1:{free_port()}/fhir", fhir_max_retries=0, fhir_connect_timeout_s=2.0,
        # a daily cron whose fire time is the current minute: every call below falls in that one slot
        sync_cron=f"{now.minute} {now.hour} * * *", sync_timezone="UTC",
    )


def test_a_fire_time_is_run_once_even_when_fired_twice(state_url: str, tmp_path: Path) -> None:
    settings = _offline_settings(state_url, tmp_path)
    nightly_sync(settings)  # claims the slot; no FHIR server listens, so the run fails (and is recorded)
    nightly_sync(settings)  # same slot, as a second replica would: logs and returns
    store = StateStore(state_url)
    try:
        assert [r.status for r in store.runs()] == ["failed"]
        slot = fire_time(cron_trigger_of(settings), datetime.now(UTC), settings.sync_misfire_grace_s)
        assert slot is not None and store.lease_holder(slot_lease(slot)) is not None
        assert store.lease_holder(LEASE) is None
    finally:
        store.close()


def test_the_scheduler_keeps_one_job_row_on_both_backends(state_url: str, tmp_path: Path) -> None:
    settings = _offline_settings(state_url, tmp_path)
    stores = [StateStore(state_url), StateStore(state_url)]
    try:
        schedulers = [start_scheduler(settings, store, f"replica-{i}") for i, store in enumerate(stores)]
        jobs = [scheduler.get_job(JOB_ID) for scheduler in schedulers]
        assert all(job is not None and job.args == (job_arguments(settings),) for job in jobs)  # no holder, no secrets
        for scheduler in schedulers:
            scheduler.shutdown(wait=False)
        with stores[0].engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT id FROM ov_apscheduler_jobs")).scalars().all() == [JOB_ID]
    finally:
        for store in stores:
            store.close()


def cron_trigger_of(settings: Settings) -> Any:
    from cds.scheduling import cron_trigger

    return cron_trigger(settings)
