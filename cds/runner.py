"""Builds one sync run from the settings (the composition root of the batch side)."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from pathlib import Path

from adapters import Auth, BearerTokenAuth, FhirClient, FhirClientConfig, SmartBackendAuth, SmartBackendConfig
from cds.errors import ConfigError, SyncError
from cds.extraction import LoadedExtractors, load_extractors
from cds.faults import checkpoint_from_env
from cds.settings import Settings
from cds.state import StateStore
from cds.summarise import build_guarded_summariser
from cds.sync import NotesStage, OrdersHook, ProgressHook, SyncJob, SyncOptions, SyncReport
from models import RuntimeConfig

log = logging.getLogger(__name__)
LEASE = "nightly-sync"


def _acquire(store: StateStore, who: str, ttl_s: float) -> bool:
    """The lease, taken over from a holder on this host whose process is gone (killed mid-run)."""
    if store.acquire_lease(LEASE, who, ttl_s):
        return True
    current = store.lease_holder(LEASE)
    if current is None:
        return store.acquire_lease(LEASE, who, ttl_s)
    if not _dead_local_process(current):
        return False
    log.warning("taking over the sync lease of a dead process", extra={"holder": current})
    return store.take_over_lease(LEASE, current, who, ttl_s)


def _dead_local_process(holder: str) -> bool:
    """True only when the holder ("host:pid") ran on this host and that pid is gone or a zombie."""
    host, _, pid_text = holder.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        # /proc/PID/stat: "pid (comm) STATE ..."; comm may hold spaces or parentheses
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def fhir_config(settings: Settings) -> FhirClientConfig:
    return FhirClientConfig(
        base_url=settings.fhir_base_url,
        connect_timeout_s=settings.fhir_connect_timeout_s,
        read_timeout_s=settings.fhir_read_timeout_s,
        max_connections=settings.fhir_max_connections,
        page_size=settings.fhir_page_size,
        max_retries=settings.fhir_max_retries,
        write_batch_size=settings.fhir_write_batch_size,
    )


def fhir_auth(settings: Settings) -> Auth | None:
    if settings.fhir_auth == "none":
        return None
    if settings.fhir_auth == "bearer":
        if not settings.fhir_bearer_token:
            raise ConfigError("OV-0005", "fhir_auth=bearer needs ONCOVIGIL_FHIR_BEARER_TOKEN")
        return BearerTokenAuth(settings.fhir_bearer_token)
    missing = [n for n in ("smart_token_url", "smart_client_id", "smart_private_key_file", "smart_key_id")
               if not getattr(settings, n)]
    if missing:
        names = ", ".join("ONCOVIGIL_" + m.upper() for m in missing)
        raise ConfigError("OV-0006", f"fhir_auth=smart-backend needs {names}")
    assert settings.smart_private_key_file is not None and settings.smart_token_url and settings.smart_client_id
    return SmartBackendAuth(SmartBackendConfig(
        token_url=settings.smart_token_url, client_id=settings.smart_client_id,
        private_key_pem=settings.smart_private_key_file.read_bytes(), key_id=str(settings.smart_key_id),
        alg=settings.smart_alg, scope=settings.smart_scope,
    ))


def runtime_config(settings: Settings) -> RuntimeConfig:
    # No dynamic int8: it takes one activation scale over the whole batch, so a note's findings would
    # depend on the notes batched with it; a resumed run batches differently and would not reproduce
    # an uninterrupted one (tests/cds/test_crash.py). fp32 (fp16 on GPU) gives each note the same answer.
    return RuntimeConfig(
        providers=tuple(settings.onnx_providers),
        threads=settings.onnx_threads,
        allow_int8=False,
        spin=settings.onnx_spin_wait,
    )


async def run_sync_once(
    settings: Settings,
    store: StateStore,
    *,
    since: datetime | None = None,
    on_orders: OrdersHook | None = None,
    progress: ProgressHook | None = None,
    holder: str | None = None,
    extractors: LoadedExtractors | None = None,
    notes_stage: NotesStage | None = None,
) -> SyncReport:
    """One sync under the database lease, so two replicas never run it at the same time.

    ``extractors`` + ``notes_stage``: the Ray engine runs the notes stage on its cluster (cds.sync_ray).
    """
    who = holder or f"{socket.gethostname()}:{os.getpid()}"
    if not _acquire(store, who, settings.sync_lease_ttl_s):
        raise SyncError("OV-0061", "another OncoVigil process holds the sync lease; this run was skipped")
    try:
        interrupted = store.close_interrupted_runs("sync")
        if interrupted:
            log.warning("earlier sync runs were interrupted", extra={"runs": interrupted})
        if extractors is None:
            extractors = load_extractors(settings.resolved_models_dir, runtime_config(settings))
        options = SyncOptions(batch_size=settings.sync_batch_size, since=since,
                              summary_window_days=settings.summary_window_days,
                              write_batch_size=settings.fhir_write_batch_size)
        async with FhirClient(fhir_config(settings), auth=fhir_auth(settings)) as client:
            summariser = build_guarded_summariser(settings.resolved_models_dir, runtime_config(settings))
            job = SyncJob(store, client, extractors, options, on_orders=on_orders, progress=progress,
                          checkpoint=checkpoint_from_env(os.environ), notes_stage=notes_stage,
                          summariser=summariser)
            return await job.run()
    finally:
        store.release_lease(LEASE, who)

