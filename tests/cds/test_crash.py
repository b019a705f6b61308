"""Crash safety of `oncovigil sync`: SIGKILL at several points, or the FHIR server stopped mid-run, then a
restart; the server must end exactly as after one uninterrupted run (same resources, none twice).

A sandbox of its own (file H2 database, so it can be stopped and started again with its data) holds a
small cohort. The uninterrupted reference run and each crash scenario start from a server without any
generated resource. The kills are real: the `oncovigil sync` subprocess SIGKILLs itself at the point
named by ONCOVIGIL_FAULT_KILL_AT (cds/faults.py, read by the composition root only).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_sync_kit import (
    OV,
    REPO,
    cli_env,
    delete_generated,
    duplicates,
    generated_snapshot,
    real_models_dir,
    run_cli,
    unavailable,
)

from adapters import FhirClient, FhirClientConfig
from cds.errors import SandboxError
from cds.sandbox import SandboxManager, free_port

PATIENTS = 6
SEED = 23
SIGKILLED = -9
Snapshot = dict[str, Counter[str]]


@dataclass(frozen=True)
class CrashSandbox:
    manager: SandboxManager
    models: Path
    root: Path

    @property
    def url(self) -> str:
        return self.manager.url

    def env(self, name: str, **settings: str) -> dict[str, str]:
        home = self.root / name
        home.mkdir(exist_ok=True)
        return cli_env(
            home, fhir_base_url=self.url, models_dir=str(self.models), sync_batch_size="4",
            fhir_page_size="10", fhir_read_timeout_s="120", **settings,
        )

    def snapshot(self) -> Snapshot:
        async def go() -> Snapshot:
            async with FhirClient(FhirClientConfig(base_url=self.url, read_timeout_s=120.0)) as client:
                return await generated_snapshot(client)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def crash_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashSandbox]:
    models = real_models_dir()
    root = tmp_path_factory.mktemp("crash")
    manager = SandboxManager(
        sandbox_dir=REPO / "docker" / "hapi", state_dir=root / "sandbox", port=free_port(),
        heap_mb=int(os.environ.get("ONCOVIGIL_SANDBOX_HEAP_MB", "1024")),
        start_timeout_s=float(os.environ.get("ONCOVIGIL_SANDBOX_START_TIMEOUT_S", "300")), database="file",
    )
    try:
        manager.build()
        manager.start()
    except SandboxError as exc:
        unavailable(f"HAPI sandbox unavailable: {exc}")
    try:
        from cds.cohort import generate_cohort
        from cds.seed import seed_all

        async def seed() -> None:
            async with FhirClient(FhirClientConfig(base_url=manager.url, read_timeout_s=180.0)) as client:
                await seed_all(client, generate_cohort(PATIENTS, SEED), root / "truth", data_dir=None)

        asyncio.run(seed())
        yield CrashSandbox(manager, models, root)
    finally:
        manager.stop()


def _sync(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(["sync", "--json"], env)


def _ok(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"sync failed: {done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["status"] == "ok", report
    return report


@pytest.fixture(scope="module")
def reference(crash_sandbox: CrashSandbox) -> Snapshot:
    """The server after one uninterrupted run from scratch."""
    delete_generated(crash_sandbox.url)
    assert not any(crash_sandbox.snapshot().values())
    _ok(_sync(crash_sandbox.env("reference")))
    snapshot = crash_sandbox.snapshot()
    assert snapshot["AdverseEvent"], "the uninterrupted run wrote no AdverseEvent: nothing to compare"
    assert snapshot["Provenance"] and snapshot["Device"]
    assert snapshot["DetectedIssue"], "the uninterrupted run wrote no DetectedIssue (the cohort plants a duplicate)"
    assert not duplicates(snapshot)
    return snapshot


def _assert_same(after: Snapshot, reference: Snapshot) -> None:
    assert not duplicates(after), f"duplicated resources: {duplicates(after)}"
    for rtype in reference:
        missing = set(reference[rtype]) - set(after[rtype])
        extra = set(after[rtype]) - set(reference[rtype])
        assert not missing and not extra, f"{rtype}: missing {sorted(missing)}, extra {sorted(extra)}"
        assert sum(after[rtype].values()) == sum(reference[rtype].values())


def test_sigkill_at_each_stage_then_restart_ends_like_an_uninterrupted_run(
    crash_sandbox: CrashSandbox, reference: Snapshot
) -> None:
    delete_generated(crash_sandbox.url)
    env = crash_sandbox.env("killed")
    progress = []
    for point in ("pull:25", "infer:3", "write:2", "before-watermark:2"):
        done = _sync({**env, "ONCOVIGIL_FAULT_KILL_AT": point})
        assert done.returncode == SIGKILLED, f"{point}: the run was not killed there (exit {done.returncode}) "
        progress.append(sum(crash_sandbox.snapshot()["AdverseEvent"].values()))
    assert 0 < progress[-1] < sum(reference["AdverseEvent"].values()), (
        f"the kills should leave a partly written server, AdverseEvents after each: {progress}"
    )
    # the next run finishes the notes, writes the DetectedIssues, and dies before the orders' watermark moves
    done = _sync({**env, "ONCOVIGIL_FAULT_KILL_AT": "orders:1"})
    assert done.returncode == SIGKILLED, f"orders: the run was not killed there (exit {done.returncode})"
    killed = crash_sandbox.snapshot()
    assert sum(killed["AdverseEvent"].values()) == sum(reference["AdverseEvent"].values())
    assert killed["DetectedIssue"] == reference["DetectedIssue"]
    report = _ok(_sync(env))
    assert report["counts"]["overprescription_patients_assessed"] > 0, "the orders were not read again"
    assert report["counts"]["DetectedIssue_written"] == 0 and report["counts"]["DetectedIssue_unchanged"] > 0
    _assert_same(crash_sandbox.snapshot(), reference)

    runs = json.loads(run_cli(["runs", "--json"], env, timeout=120).stdout)
    assert [r["status"] for r in runs] == ["ok", *["interrupted"] * 5]
    # a restart on a complete server is a no-op
    again = _ok(_sync(env))
    assert again["counts"]["notes_processed"] == 0
    _assert_same(crash_sandbox.snapshot(), reference)


def test_fhir_server_stopped_mid_run_then_started_ends_like_an_uninterrupted_run(
    crash_sandbox: CrashSandbox, reference: Snapshot
) -> None:
    delete_generated(crash_sandbox.url)
    flag = crash_sandbox.root / "pause-flag"
    env = crash_sandbox.env("server-stopped", fhir_max_retries="1")
    paused = flag.with_name(flag.name + ".paused")
    proc = subprocess.Popen(
        [OV, "sync", "--json"], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**env, "ONCOVIGIL_FAULT_PAUSE_AT": "before-watermark:2", "ONCOVIGIL_FAULT_PAUSE_FILE": str(flag)},
    )
    try:
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert proc.poll() is None, f"the sync ended before the pause point: {proc.communicate()}"
            assert time.monotonic() < deadline, "the sync never reached the pause point"
            time.sleep(0.2)
        written = sum(crash_sandbox.snapshot()["AdverseEvent"].values())
        assert crash_sandbox.manager.stop()
        flag.with_name(flag.name + ".resume").touch()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (stdout, stderr)
    assert "OV-0060" in stderr and "run it again" in stderr, stderr
    assert "Traceback" not in stderr
    assert 0 < written < sum(reference["AdverseEvent"].values()), "the server should have stopped mid-run"

    crash_sandbox.manager.start()
    _ok(_sync(env))
    _assert_same(crash_sandbox.snapshot(), reference)
    runs = json.loads(run_cli(["runs", "--json"], env, timeout=120).stdout)
    assert [r["status"] for r in runs] == ["ok", "failed"]
    assert [e["stage"] for e in runs[1]["errors"]] == ["run"], runs[1]
