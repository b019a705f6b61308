"""`oncovigil sync --engine ray` on a real local Ray cluster (head + 2 workers on loopback) and the live sandbox.

The end state on the FHIR server (every generated resource by identity, per type) and in the state store
(findings, watermark) must be the one the single-process sync leaves on the same seeded cohort; a re-run
must change nothing; a run that fails half-way must leave its finished windows recorded and the watermark
where it was, and the next run must skip those windows and end in the same state.

Ray rewrites a loopback address to the host's outward address when a driver joins a cluster; with every
node on 127.0.0.1 that address is not served, so the fixture sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(Ray then keeps loopback) before Ray is first imported.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_sync_kit import cli_env, delete_generated, duplicates, generated_snapshot, real_models_dir, run_cli

from adapters import FhirClient, FhirClientConfig
from cds.assessor import build_assessor_hook
from cds.errors import SyncError
from cds.runner import run_sync_once
from cds.settings import Settings, load_settings
from cds.state import StateStore
from cds.sync import NOTES, SyncReport
from cds.sync_ray import WINDOW_TASK, Window, plan_windows

REPO = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
BACKFILL_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # before anything on the server: a backfill of everything


# windows (pure) -------------------------------------------------------------------------------------------
def test_windows_cover_the_range_once_on_a_fixed_grid() -> None:
    oldest = datetime(2026, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)
    newest = datetime(2026, 1, 1, 10, 0, 31, tzinfo=UTC)
    windows = plan_windows(None, oldest, newest, 10.0)
    ends = [w.end for w in windows]
    assert ends == [datetime(2026, 1, 1, 10, 0, s, tzinfo=UTC) for s in (10, 20, 30)] + [None]
    assert [w.start for w in windows] == [None, *ends[:-1]]  # each starts where the last ended: no gap, no overlap
    # a later run with a newer change keeps the earlier closed windows (same keys), so they can be skipped
    later = plan_windows(None, oldest, newest + timedelta(seconds=25), 10.0)
    assert [w.key for w in later[:3]] == [w.key for w in windows[:3]]
    assert windows[1].params == [("_lastUpdated", "le2026-01-01T10:00:20.000+00:00")]
    assert windows[-1].params == []  # the open window reads everything after its start


def test_a_since_starts_the_first_window_and_one_change_gives_one_open_window() -> None:
    since = datetime(2025, 12, 31, tzinfo=UTC)
    at = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert plan_windows(since, at, at, 3600.0) == [Window(since, None)]


# the default path and a missing Ray ---------------------------------------------------------------------
def test_the_default_sync_path_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "from cds.cli import _register_groups\n"
        "_register_groups()\n"
        "import cds.runner, cds.sync, cds.app, cds.scheduling, models, adapters, hooks\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_engine_ray_without_ray_installed_exits_2_with_a_coded_line(tmp_path: Path) -> None:
    # fault injection: a package named `ray` first on the path that fails to import, as if Ray were absent
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray (test)')\n")
    env = cli_env(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), str(REPO)])
    done = run_cli(["sync", "--engine", "ray"], env, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip().startswith("oncovigil: OV-0110"), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "state.db").exists()  # refused before touching anything
    bogus = run_cli(["sync", "--engine", "spark"], env, timeout=120)
    assert bogus.returncode == 2 and "OV-0115" in bogus.stderr


def test_an_address_where_no_cluster_listens_fails_fast_with_a_coded_line(
    tmp_path: Path, prerequisite: Callable[[bool, str], None]
) -> None:
    # not imported here: the cluster fixture must import it first
    prerequisite(importlib.util.find_spec("ray") is not None, "ray is not installed (pip install 'oncovigil[ray]')")
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = cli_env(tmp_path / "home")
    env["PYTHONPATH"] = str(REPO)
    started = time.monotonic()
    done = run_cli(["sync", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"], env, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines()[-1].startswith("oncovigil: OV-0111"), done.stderr
    assert time.monotonic() - started < 60  # not Ray's minutes of retries


# the real thing ----------------------------------------------------------------------------------------
@dataclass
class RayCluster:
    address: str
    ray: Any


@pytest.fixture(scope="module")
def ray_cluster(prerequisite: Callable[[bool, str], None]) -> Iterator[RayCluster]:
    """Head + 2 workers on 127.0.0.1, 1 CPU and 100 MB of object store each; everything stopped afterwards."""
    previous = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
        from ray._private import ray_constants
        from ray.cluster_utils import Cluster
    except ImportError:
        prerequisite(False, "ray is not installed (pip install 'oncovigil[ray]')")
        raise
    # read once when Ray is first imported: a test that imported Ray earlier would leave the driver hanging
    assert not ray_constants.ENABLE_RAY_CLUSTER, "ray was imported in this process before the cluster fixture"
    node = {"num_cpus": 1, "object_store_memory": 100 * MB, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        yield RayCluster(str(cluster.address), ray)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        if previous is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = previous


def _settings(home: Path, base_url: str, models: Path, **extra: Any) -> Settings:
    return load_settings(
        home=home,
        fhir_base_url=base_url,
        models_dir=models,
        state_db_url=f"sqlite:///{home}/state.db",
        onnx_providers=["CPUExecutionProvider"],
        onnx_threads=1,
        sync_batch_size=8,
        fhir_read_timeout_s=120.0,
        **extra,
    )


def _server(base_url: str, fn: Any) -> Any:
    async def go() -> Any:
        async with FhirClient(FhirClientConfig(base_url=base_url, read_timeout_s=120.0)) as client:
            return await fn(client)

    return asyncio.run(go())


def _ray_sync(settings: Settings, store: StateStore, cluster: RayCluster, **kw: Any) -> SyncReport:
    from cds.sync_ray import run_sync_ray_once

    # the whole nightly job, as `oncovigil sync` wires it: notes on Ray, then the orders' DetectedIssues
    hook = build_assessor_hook(settings, store)
    return asyncio.run(run_sync_ray_once(settings, store, address=cluster.address, on_orders=hook, **kw))


@dataclass
class Baseline:
    snapshot: dict[str, Counter[str]]
    findings: set[str]
    watermark: str | None
    report: SyncReport


@pytest.fixture(scope="module")
def baseline(seeded_sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """The single-process sync from a clean server: the end state the Ray engine must reproduce."""
    models = real_models_dir()
    base = seeded_sandbox.base_url
    delete_generated(base)
    home = tmp_path_factory.mktemp("local-sync")
    store = StateStore(f"sqlite:///{home}/state.db")
    settings = _settings(home, base, models)
    report = asyncio.run(run_sync_once(settings, store, on_orders=build_assessor_hook(settings, store)))
    assert report.status == "ok", report.errors
    assert report.counts.get("AdverseEvent_created", 0) > 0, report.counts
    state = Baseline(
        _server(base, generated_snapshot), {r.key for r in store.findings()}, store.get_watermark(NOTES), report
    )
    store.close()
    return state


def _window_s(base: str) -> float:
    """A window length that puts the server's distinct note instants (one per seeding transaction) apart."""

    async def stamps(client: FhirClient) -> list[datetime]:
        seen = {
            datetime.fromisoformat(r["meta"]["lastUpdated"].replace("Z", "+00:00"))
            async for r in client.search("DocumentReference", [("_sort", "_lastUpdated")], page_size=200)
        }
        return sorted(seen)

    found = _server(base, stamps)
    assert len(found) >= 2, f"the seeded notes carry {len(found)} distinct lastUpdated instants; need 2 to split"
    span = (found[-1] - found[0]).total_seconds()
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(found)]
    # half the smallest gap: two instants never share a window, and there are at least three windows
    return max(min(gaps) / 2, span / 50)


def _fresh_store(tmp_path: Path) -> tuple[Path, StateStore]:
    home = tmp_path / "ray-home"
    home.mkdir()
    return home, StateStore(f"sqlite:///{home}/state.db")


def test_ray_sync_ends_like_the_single_process_sync_and_a_rerun_is_a_no_op(
    baseline: Baseline, seeded_sandbox: Any, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    base = seeded_sandbox.base_url
    delete_generated(base)
    assert not any(_server(base, generated_snapshot).values())
    home, store = _fresh_store(tmp_path)
    window_s = _window_s(base)
    settings = _settings(home, base, real_models_dir(), ray_actors=2, ray_window_s=window_s)

    first = _ray_sync(settings, store, ray_cluster, since=BACKFILL_FROM)
    assert first.status == "ok", first.errors
    assert first.counts["ray_windows"] >= 3, first.counts  # the backfill really was split
    assert first.counts["ray_windows_done"] == first.counts["ray_windows"]
    assert first.counts["ray_actor_nodes"] == 2  # the two actors ran on two different nodes
    snapshot = _server(base, generated_snapshot)
    assert duplicates(snapshot) == {}
    assert {t: sum(c.values()) for t, c in snapshot.items()} == {
        t: sum(c.values()) for t, c in baseline.snapshot.items()
    }
    assert snapshot["AdverseEvent"] == baseline.snapshot["AdverseEvent"]  # the same identifiers, once each
    assert snapshot == baseline.snapshot
    assert {r.key for r in store.findings()} == baseline.findings
    for key in ("notes_processed", "findings", "AdverseEvent_created", "AdeSummary_created"):
        assert first.counts.get(key) == baseline.report.counts.get(key), key
    assert store.get_watermark(NOTES) is not None
    assert store.get_watermark(NOTES) >= str(baseline.watermark)
    closed = first.counts["ray_windows"] - 1
    assert closed >= 2

    # the nightly way (from the watermark), through the CLI, joining the same cluster: nothing to do
    env = cli_env(
        home,
        state_db_url=f"sqlite:///{home}/state.db",
        fhir_base_url=base,
        models_dir=str(real_models_dir()),
        onnx_threads="1",
        ray_actors="2",
        ray_window_s=str(window_s),
    )
    env["PYTHONPATH"] = str(REPO)
    cli = run_cli(["sync", "--engine", "ray", "--ray-address", ray_cluster.address, "--json"], env, timeout=900)
    assert cli.returncode == 0, cli.stderr[-3000:]
    again = _last_json(cli.stdout)
    assert again["status"] == "ok", again
    assert again["counts"].get("notes_processed", 0) == 0, again["counts"]
    assert again["counts"].get("AdverseEvent_created", 0) == 0, again["counts"]

    # the same backfill again: every closed window is recorded as done and skipped
    third = _ray_sync(settings, store, ray_cluster, since=BACKFILL_FROM)
    assert third.status == "ok", third.errors
    assert third.counts["ray_windows_skipped"] >= closed, third.counts
    assert third.counts.get("notes_processed", 0) == 0
    assert third.counts.get("AdverseEvent_created", 0) == 0
    assert _server(base, generated_snapshot) == baseline.snapshot
    store.close()


def _last_json(stdout: str) -> dict[str, Any]:
    import json

    line = [ln for ln in stdout.splitlines() if ln.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    return result


class _FailOnce:
    """Fault injection: raise the N-th time a window is about to be recorded as done."""

    def __init__(self, stage: str, times: int) -> None:
        self.stage, self.times, self.seen = stage, times, 0

    def __call__(self, stage: str) -> None:
        if stage == self.stage:
            self.seen += 1
            if self.seen == self.times:
                raise RuntimeError(f"injected failure at {stage} #{self.seen}")


def test_a_failed_run_keeps_its_finished_windows_and_the_next_run_skips_them(
    baseline: Baseline, seeded_sandbox: Any, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    base = seeded_sandbox.base_url
    delete_generated(base)
    home, store = _fresh_store(tmp_path)
    window_s = _window_s(base)
    settings = _settings(home, base, real_models_dir(), ray_actors=2, ray_window_s=window_s)

    with pytest.raises(SyncError, match="OV-0060"):
        _ray_sync(settings, store, ray_cluster, since=BACKFILL_FROM, checkpoint=_FailOnce("before-window-done", 2))
    assert store.get_watermark(NOTES) is None  # not every window was written: the watermark stays
    assert store.runs(1)[0].status == "failed"
    done = [k for k in _window_keys(store)]
    assert len(done) == 1, done

    resumed = _ray_sync(settings, store, ray_cluster, since=BACKFILL_FROM)
    assert resumed.status == "ok", resumed.errors
    assert resumed.counts["ray_windows_skipped"] == 1
    snapshot = _server(base, generated_snapshot)
    assert duplicates(snapshot) == {}
    assert snapshot == baseline.snapshot
    assert {r.key for r in store.findings()} == baseline.findings
    assert store.get_watermark(NOTES) is not None
    store.close()


def _window_keys(store: StateStore) -> list[str]:
    from sqlalchemy import select

    from cds.state import ProcessedInputRow

    with store.session() as s:
        return list(s.scalars(select(ProcessedInputRow.input_key).where(ProcessedInputRow.task == WINDOW_TASK)))
