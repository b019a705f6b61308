"""The notes stage of the sync on a Ray cluster (`oncovigil sync --engine ray`), for backfills of many notes.

The range of ``meta.lastUpdated`` to read is split into date windows on a fixed grid (``ray_window_s``,
aligned to the Unix epoch, so a re-run plans the same windows). Ray tasks read the windows' pages in
parallel; Ray actors, each holding the extractors loaded once (one ONNX session per model, on the GPU the
actor was given when the cluster has GPUs), run inference; the driver writes back through the same
``SyncJob.write_note_batch`` as the single-process sync (idempotent conditional creates, findings and
processed hashes in the state store), one batch at a time so concurrent conditional creates never race.

Resumable: a closed window (its end at or before the newest change seen when the run was planned) is
recorded in the state store once every write of it was confirmed, and skipped by a later run that plans it
again; the notes watermark is advanced only after every window of the run was written. The last window is
open-ended (changes arriving during the run) and never recorded: the watermark covers it.

Ray is imported here only, when the engine is asked for; the single-process path never loads it.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters import FhirClient, Note, PullStats, last_updated_bounds, pull_notes
from cds.errors import RayEngineConfigError, RayEngineError
from cds.extraction import LoadedExtractors, NoteFindings, load_extractors
from cds.runner import fhir_auth, fhir_config, run_sync_once, runtime_config
from cds.settings import Settings
from cds.state import StateStore
from cds.sync import (
    GENERATED_NOTE_TYPES,
    NOTES,
    OrdersHook,
    ProgressHook,
    SyncJob,
    SyncReport,
    _gather_or_cancel,
    _resume_from,
)
from models import RuntimeConfig

log = logging.getLogger(__name__)

WINDOW_TASK = "ray-window"  # processed-input rows (task, resource type, window key) of finished windows
MAX_WINDOWS = 100_000
_DONE = object()
Checkpoint = Callable[[str], None]


def import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayEngineError(
            "OV-0110",
            "--engine ray needs Ray: pip install 'oncovigil[ray]' (or drop --engine ray for the single-process sync)",
        ) from exc


# windows (pure) ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Changes with ``start < meta.lastUpdated <= end``; ``start`` None: from the first, ``end`` None: open."""

    start: datetime | None
    end: datetime | None

    @property
    def key(self) -> str:
        return f"{_instant(self.start)}|{_instant(self.end)}"

    @property
    def params(self) -> list[tuple[str, str]]:
        return [("_lastUpdated", f"le{_instant(self.end)}")] if self.end is not None else []


def _instant(value: datetime | None) -> str:
    # millisecond precision, as HAPI stores lastUpdated: `gt`/`le` at coarser precision would widen the window
    return "-" if value is None else value.astimezone(UTC).isoformat(timespec="milliseconds")


def plan_windows(start: datetime | None, oldest: datetime, newest: datetime, window_s: float) -> list[Window]:
    """Windows from ``start`` on grid points ``k * window_s`` past ``oldest`` and before ``newest``, then open."""
    step_ms = max(1, round(window_s * 1000))
    first_ms, last_ms = _ms(oldest), _ms(newest)
    if (last_ms - first_ms) // step_ms > MAX_WINDOWS:
        raise RayEngineError(
            "OV-0112",
            f"{window_s} s windows would split this backfill into more than "
            f"{MAX_WINDOWS} windows; raise ONCOVIGIL_RAY_WINDOW_S",
        )
    edges: list[datetime | None] = [start]
    grid = -(-first_ms // step_ms) * step_ms  # the first grid point at or after the oldest change
    while grid < last_ms:
        edges.append(datetime.fromtimestamp(grid / 1000, UTC))
        grid += step_ms
    edges.append(None)
    return [Window(a, b) for a, b in itertools.pairwise(edges)]


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def batches(items: Sequence[Note], size: int) -> list[list[Note]]:
    return [list(items[i : i + size]) for i in range(0, len(items), max(1, size))]


# what runs on the cluster ----------------------------------------------------------------------------
def pull_window(settings: Settings, window: Window) -> tuple[list[Note], PullStats]:
    """A Ray task: every note of one window, with the pull's counts (its own FHIR client, from the settings)."""

    async def go() -> tuple[list[Note], PullStats]:
        stats = PullStats()
        async with FhirClient(fhir_config(settings), auth=fhir_auth(settings)) as client:
            notes = [n async for n in pull_notes(client, window.start, stats=stats, params=window.params)]
        return notes, stats

    return asyncio.run(go())


class ExtractionWorker:
    """A Ray actor: loads the extractors once and runs batches of note texts through them."""

    def __init__(self, models_dir: str, runtime: RuntimeConfig) -> None:
        self._extractors = load_extractors(Path(models_dir), runtime)
        self._where = f"{socket.gethostname()}:{os.getpid()}"
        self._node = str(import_ray().get_runtime_context().get_node_id())

    def describe(self) -> dict[str, Any]:
        loaded = self._extractors
        return {
            "versions": dict(loaded.versions),
            "missing": list(loaded.missing),
            "where": self._where,
            "node": self._node,
        }

    def run(self, texts: list[str]) -> list[NoteFindings]:
        return self._extractors.run(texts)


# the driver ----------------------------------------------------------------------------------------
class RayNotesStage:
    """The notes stage of one SyncJob run: plan windows, pull them on the cluster, infer on the actors, write."""

    def __init__(
        self,
        ray: Any,
        settings: Settings,
        actors: Sequence[Any],
        checkpoint: Checkpoint | None = None,
        progress: ProgressHook | None = None,
        nodes: int = 0,
    ) -> None:
        self._ray = ray
        self._nodes = nodes
        self._settings = settings
        self._actors = list(actors)
        self._checkpoint = checkpoint or (lambda _stage: None)
        self._progress = progress or (lambda _stage, _n: None)
        self._pull = ray.remote(num_cpus=0, max_retries=2)(pull_window)

    async def __call__(self, job: SyncJob, report: SyncReport) -> None:
        store, opts = job.store, job.options
        since = _resume_from(store.get_watermark(NOTES), opts.since)
        # planned over the notes only: our own summaries, rewritten every run, would stretch the plan past the
        # windows a re-run must find again (the open window still reads them, and the job skips them)
        not_ours = [("type:not", code) for code in sorted(GENERATED_NOTE_TYPES)]
        oldest, newest = await last_updated_bounds(job.client, since, params=not_ours)
        if oldest is None or newest is None:
            report.counts["ray_windows"] = 0
            return
        windows = plan_windows(since, oldest, newest, self._settings.ray_window_s)
        recorded = {w.key: store.processed_hash(WINDOW_TASK, NOTES, w.key) for w in windows if w.end is not None}
        todo = [w for w in windows if recorded.get(w.key) is None]
        report.add("ray_windows", len(windows))
        report.add("ray_windows_skipped", len(windows) - len(todo))
        report.add("ray_actors", len(self._actors))
        report.add("ray_actor_nodes", self._nodes)
        log.info(
            "ray backfill planned",
            extra={
                "run_id": report.run_id,
                "windows": len(windows),
                "skipped": len(windows) - len(todo),
                "actors": len(self._actors),
            },
        )
        newest_seen = [datetime.fromisoformat(v) for v in recorded.values() if v and v != "-"]
        skipped: dict[str, int] = {}
        to_write: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * len(self._actors))

        async def produce() -> None:
            pending = list(todo)
            in_flight: dict[Any, Window] = {}
            turn = 0
            while pending or in_flight:
                while pending and len(in_flight) < max(2, len(self._actors)):
                    window = pending.pop(0)
                    in_flight[self._pull.remote(self._settings, window)] = window
                ready, _ = await asyncio.to_thread(self._ray.wait, list(in_flight), num_returns=1)
                window = in_flight.pop(ready[0])
                notes, stats = await asyncio.to_thread(self._ray.get, ready[0])
                report.add("notes_pulled", len(notes))
                for _ in notes:
                    job.checkpoint("pull")  # the fault-injection points of the single-process stage, in order
                for reason, n in stats.skipped.items():
                    skipped[reason] = skipped.get(reason, 0) + n
                parts = batches(notes, opts.batch_size) or [[]]
                for i, batch in enumerate(parts):
                    ours = sum(1 for n in batch if n.type_code in GENERATED_NOTE_TYPES)
                    todo_notes = [n for n in batch if job.needs_processing(n)]
                    report.add("notes_skipped_generated", ours)
                    report.add("notes_skipped_unchanged", len(batch) - ours - len(todo_notes))
                    ref = None
                    if todo_notes:
                        ref = self._actors[turn % len(self._actors)].run.remote([n.text for n in todo_notes])
                        turn += 1
                    last = i == len(parts) - 1
                    await to_write.put((window, batch, todo_notes, ref, stats.watermark if last else None, last))
            await to_write.put(_DONE)

        async def write() -> None:
            while (item := await to_write.get()) is not _DONE:
                window, batch, todo_notes, ref, window_newest, last = item
                findings: list[NoteFindings] = await asyncio.to_thread(self._ray.get, ref) if ref is not None else []
                job.checkpoint("infer")
                self._checkpoint("infer")
                await job.write_note_batch(todo_notes, findings, report)
                self._progress("notes", len(batch))
                if not last:
                    continue
                if window_newest is not None:
                    newest_seen.append(window_newest)
                if window.end is not None:
                    value = window_newest.astimezone(UTC).isoformat() if window_newest is not None else "-"
                    self._checkpoint("before-window-done")
                    store.mark_processed(WINDOW_TASK, NOTES, [(window.key, value)])
                report.add("ray_windows_done")

        await _gather_or_cancel(produce(), write())
        if skipped:
            report.counts["notes_not_current_or_unreadable"] = skipped
        job.checkpoint("before-watermark")
        if newest_seen:
            store.set_watermark(NOTES, max(newest_seen).astimezone(UTC).isoformat())


@dataclass(frozen=True)
class Actors:
    handles: list[Any]
    loaded: LoadedExtractors  # names and versions only: the driver never runs a model
    nodes: int  # distinct Ray nodes the actors run on


def start_actors(ray: Any, settings: Settings) -> Actors:
    """The extraction actors (one per GPU when the cluster has GPUs), and what they loaded, checked alike."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = settings.ray_actors or (gpus if gpus else max(1, int(resources.get("CPU", 1)) - 1))
    runtime = runtime_config(settings)
    if gpus == 0:
        # one CPU per actor: ONNX Runtime's default would start a thread per core of the node in every actor
        runtime = replace(runtime, threads=settings.onnx_threads or 1)
    cls = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(ExtractionWorker)
    actors = [cls.remote(str(settings.resolved_models_dir), runtime) for _ in range(count)]
    try:
        described: list[dict[str, Any]] = ray.get([a.describe.remote() for a in actors], timeout=900)
    except Exception as exc:
        for actor in actors:
            ray.kill(actor)
        raise RayEngineError(
            "OV-0113",
            f"the extraction actors did not start ({type(exc).__name__}: "
            f"{str(exc)[:300]}); each node needs the model directories at "
            f"{settings.resolved_models_dir} (ONCOVIGIL_MODELS_DIR)",
        ) from exc
    versions = {tuple(sorted(d["versions"].items())) for d in described}
    if len(versions) != 1:
        for actor in actors:
            ray.kill(actor)
        raise RayEngineError(
            "OV-0114",
            f"the nodes loaded different models ({sorted(versions)}); give every node the same model directories",
        )
    first = described[0]
    log.info(
        "ray extraction actors ready",
        extra={
            "actors": count,
            "gpus_per_actor": 1 if gpus else 0,
            "where": [d["where"] for d in described],
            "models": first["versions"],
        },
    )
    # the driver never runs a model: it needs the names and versions only (dedupe keys, Device, Provenance)
    shell = LoadedExtractors(dict.fromkeys(first["versions"]), first["versions"], first["missing"])
    return Actors(actors, shell, len({d["node"] for d in described}))


def check_address(address: str) -> None:
    """Refuses an address Ray could never parse: the user's argument (exit 2), unlike a cluster that is down."""
    if address in ("auto", "local"):
        return
    scheme, _, rest = address.partition("://") if "://" in address else ("", "", address)
    if scheme not in ("", "ray", "http", "https"):
        return  # another Ray client builder (the module the scheme names): Ray resolves it
    host, colon, port = rest.rpartition(":")
    # Ray Client (ray://) may leave the port to its default; a GCS address needs HOST:PORT
    well_formed = (bool(host) and port.isdigit()) or (scheme == "ray" and bool(rest) and not colon)
    if scheme in ("", "ray") and well_formed:
        return
    raise RayEngineConfigError(
        "OV-0111",
        f"Ray address {address!r} is not auto, local, HOST:PORT or ray://HOST:PORT; "
        "fix --ray-address / ONCOVIGIL_RAY_ADDRESS",
    )


def _check_reachable(address: str) -> None:
    """Fails fast on a cluster address nobody listens on: ``ray.init`` would retry it for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local": Ray looks the cluster up itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise RayEngineError(
            "OV-0111",
            f"nothing answers at Ray address {address} ({exc}); check --ray-address / ONCOVIGIL_RAY_ADDRESS "
            "and that `ray start` runs there",
        ) from exc


def connect(ray: Any, address: str | None) -> bool:
    """Joins the cluster at ``address`` (``ray://host:10001``, ``host:6379``, ``auto``) or starts a local one.

    Returns whether this call started Ray (and so must shut it down).
    """
    if ray.is_initialized():
        return False
    if address:
        check_address(address)
        _check_reachable(address)
    # a ray:// (Ray Client) connection forwards init arguments to the server: give it none
    local = (
        {}
        if address and "://" in address
        else {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    )
    try:
        ray.init(address=address, **local)
    except Exception as exc:
        where = address or "a local cluster"
        raise RayEngineError(
            "OV-0111",
            f"could not connect to Ray at {where} ({type(exc).__name__}: "
            f"{str(exc)[:300]}); check --ray-address / ONCOVIGIL_RAY_ADDRESS",
        ) from exc
    return True


async def run_sync_ray_once(
    settings: Settings,
    store: StateStore,
    *,
    since: datetime | None = None,
    on_orders: OrdersHook | None = None,
    progress: ProgressHook | None = None,
    address: str | None = None,
    checkpoint: Checkpoint | None = None,
) -> SyncReport:
    """One sync whose notes stage runs on Ray (orders, summaries, lease and run record as `run_sync_once`)."""
    ray = import_ray()
    started = connect(ray, address or settings.ray_address)
    actors: list[Any] = []
    try:
        started_actors = start_actors(ray, settings)
        actors = started_actors.handles
        shell = started_actors.loaded
        stage = RayNotesStage(
            ray, settings, actors, checkpoint=checkpoint, progress=progress, nodes=started_actors.nodes
        )
        return await run_sync_once(
            settings, store, since=since, on_orders=on_orders, progress=progress, extractors=shell, notes_stage=stage
        )
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
