"""The nightly job: cron parsing, the APScheduler job in the state database, the lease across processes.

The live run goes through the real scheduler, job store (pickled arguments) and sync against the sandbox,
without models (the sync then only reads notes and orders), so it needs no `oncovigil models build`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cds.errors import ConfigError, SyncError
from cds.runner import LEASE, run_sync_once
from cds.sandbox import free_port
from cds.scheduling import JOB_ID, cron_trigger, nightly_sync, start_scheduler
from cds.settings import Settings, load_settings
from cds.state import StateStore


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    (tmp_path / "no-models").mkdir(exist_ok=True)
    values: dict[str, object] = {
        "home": tmp_path, "state_db_url": f"sqlite:///{tmp_path}/state.db", "models_dir": tmp_path / "no-models",
        "fhir_base_url": f"http://127.0.0.1:{free_port()}/fhir", "fhir_max_retries": 0, "fhir_connect_timeout_s": 2.0,
        "onnx_providers": ["CPUExecutionProvider"],
    }
    values.update(overrides)
    return load_settings(**values)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_bad_cron_expression_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OV-0015"):
        cron_trigger(_settings(tmp_path, sync_cron="every night"))
    trigger = cron_trigger(_settings(tmp_path, sync_cron="30 2 * * *", sync_timezone="Europe/Paris"))
    fire = trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC))
    assert fire is not None and (fire.hour, fire.minute, str(fire.tzinfo)) == (2, 30, "Europe/Paris")


def test_the_job_lives_once_in_the_state_database_across_restarts(tmp_path: Path) -> None:
    settings = _settings(tmp_path, sync_cron="15 3 * * *")
    store = StateStore(str(settings.state_db_url))
    try:
        for _ in range(2):  # a restarted service replaces its job instead of adding a second one
            scheduler = start_scheduler(settings, store, "host:1")
            job = scheduler.get_job(JOB_ID)
            assert job is not None and (job.next_run_time.hour, job.next_run_time.minute) == (3, 15)
            assert job.max_instances == 1 and job.coalesce
            scheduler.shutdown(wait=False)
        with store.engine.connect() as conn:
            ids = [row[0] for row in conn.execute(text("SELECT id FROM ov_apscheduler_jobs"))]
        assert ids == [JOB_ID]
    finally:
        store.close()


def test_a_run_is_skipped_while_a_live_process_holds_the_lease(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = StateStore(str(settings.state_db_url))
    me = f"{socket.gethostname()}:{os.getpid()}"
    try:
        assert store.acquire_lease(LEASE, me, 3600)
        nightly_sync(settings, "another-replica:42")  # logs and returns: never raises into APScheduler
        assert store.runs() == []
        assert store.lease_holder(LEASE) == me
        with pytest.raises(SyncError, match="OV-0061"):
            asyncio.run(run_sync_once(settings, store, holder="another-replica:42"))
    finally:
        store.close()


def test_the_lease_of_a_killed_process_is_taken_over_and_its_run_marked_interrupted(tmp_path: Path) -> None:
    settings = _settings(tmp_path)  # no FHIR server listens there: this run fails after taking the lease
    store = StateStore(str(settings.state_db_url))
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    try:
        assert store.acquire_lease(LEASE, dead, 3600)
        crashed = store.start_run("sync")
        with pytest.raises(SyncError, match="OV-0060"):
            asyncio.run(run_sync_once(settings, store))
        runs = {r.id: r.status for r in store.runs()}
        assert runs[crashed] == "interrupted"
        assert sorted(runs.values()) == ["failed", "interrupted"]
        assert store.lease_holder(LEASE) is None
    finally:
        store.close()


def test_a_lease_held_on_another_host_is_never_taken_over(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = StateStore(str(settings.state_db_url))
    try:
        assert store.acquire_lease(LEASE, f"not-{socket.gethostname()}:{_dead_pid()}", 3600)
        with pytest.raises(SyncError, match="OV-0061"):
            asyncio.run(run_sync_once(settings, store))
    finally:
        store.close()


def test_the_scheduled_job_runs_the_sync_against_the_sandbox(seeded_sandbox: Any, tmp_path: Path) -> None:
    settings = _settings(tmp_path, fhir_base_url=seeded_sandbox.base_url, fhir_max_retries=2,
                         fhir_read_timeout_s=120.0)
    store = StateStore(str(settings.state_db_url))
    scheduler = start_scheduler(settings, store, f"{socket.gethostname()}:{os.getpid()}")
    try:
        scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))
        deadline = time.monotonic() + 300
        while not any(r.ended_at for r in store.runs()):
            assert time.monotonic() < deadline, "the scheduled sync did not finish in 300 s"
            time.sleep(0.5)
        job = scheduler.get_job(JOB_ID)
        assert job is not None and job.next_run_time > datetime.now(UTC)  # back on its cron
    finally:
        scheduler.shutdown(wait=True)
    [run] = store.runs()
    assert run.status == "ok", run.errors
    assert run.counts["orders_pulled"] > 0
    assert store.get_watermark("MedicationRequest") is not None
    # no model built: the notes stay unread, so a later run with models still extracts them
    assert run.counts["notes_not_read_no_models"] is True
    assert store.get_watermark("DocumentReference") is None
    assert store.lease_holder(LEASE) is None
    store.close()
