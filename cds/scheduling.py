"""The nightly job inside ``oncovigil serve``: APScheduler 3.x with its job store in the state database.

``max_instances=1`` and ``coalesce`` keep one run per process. Across replicas sharing the job store, each
may fire the same cron time: the first to claim that fire time (a lease named after it, never released)
runs it, the others log and return; the lease taken by ``run_sync_once`` keeps manual runs apart too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from cds.db_migrate import APSCHEDULER_TABLE
from cds.errors import ConfigError, SyncError
from cds.runner import run_sync_once
from cds.settings import Settings, load_settings
from cds.state import StateStore

log = logging.getLogger(__name__)
JOB_ID = "oncovigil-nightly-sync"


SECRET_SETTINGS = frozenset({"fhir_bearer_token", "state_db_url"})


def job_arguments(settings: Settings) -> dict[str, Any]:
    """What goes into the (shared, pickled) job row: the settings minus secrets, as plain JSON data."""
    return settings.model_dump(mode="json", exclude=set(SECRET_SETTINGS))


def nightly_sync(arguments: dict[str, Any] | Settings, holder: str | None = None) -> None:
    """The scheduled callable.

    Its arguments are pickled into the job row shared by every replica, so they hold no secrets: those
    come back from this process's environment or config file. The holder is this process unless named.
    Failures are logged and recorded in the run table, never raised into APScheduler.
    """
    settings = arguments if isinstance(arguments, Settings) else load_settings(**arguments)
    who = holder or f"{socket.gethostname()}:{os.getpid()}"
    store = StateStore(str(settings.state_db_url))
    try:
        slot = fire_time(cron_trigger(settings), datetime.now(UTC), settings.sync_misfire_grace_s)
        if slot is not None:
            store.purge_expired_leases()
            # held past the misfire grace, after which no replica can still fire this time
            claim_ttl_s = settings.sync_misfire_grace_s + settings.sync_lease_ttl_s
            if not store.claim_once(slot_lease(slot), who, claim_ttl_s):
                log.info("scheduled sync already run by another replica", extra={"slot": slot.isoformat()})
                return
        asyncio.run(run_sync_once(settings, store, holder=who))
    except SyncError as exc:
        if exc.code == "OV-0061":
            log.info("scheduled sync skipped: another process is syncing", extra={"code": exc.code})
        else:
            log.warning("scheduled sync did not complete", extra={"code": exc.code})
    finally:
        store.close()


def fire_time(trigger: CronTrigger, now: datetime, lookback_s: float) -> datetime | None:
    """The latest time ``trigger`` fired at or before ``now`` within ``lookback_s`` (None if it did not).

    Every replica that fires the same cron time computes the same value, whatever its delay.
    """
    latest = None
    candidate = trigger.get_next_fire_time(None, now - timedelta(seconds=lookback_s))
    while candidate is not None and candidate <= now:
        latest = candidate
        candidate = trigger.get_next_fire_time(candidate, candidate + timedelta(seconds=1))
    return latest


def slot_lease(slot: datetime) -> str:
    return f"sync-slot@{slot.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def cron_trigger(settings: Settings) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(settings.sync_cron, timezone=settings.sync_timezone)
    except ValueError as exc:
        raise ConfigError("OV-0015", f"sync_cron {settings.sync_cron!r} is not a crontab expression: {exc}") from exc


def start_scheduler(settings: Settings, store: StateStore, holder: str) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=store.engine, tablename=APSCHEDULER_TABLE)},
        timezone=settings.sync_timezone,
    )
    scheduler.add_job(
        nightly_sync,
        trigger=cron_trigger(settings),
        args=[job_arguments(settings)],  # no holder: whichever replica fires the job runs it as itself
        id=JOB_ID,
        name="nightly pharmacovigilance sync",
        replace_existing=True,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=settings.sync_misfire_grace_s,
    )
    scheduler.start()
    job = scheduler.get_job(JOB_ID)
    next_run = str(job.next_run_time) if job else None
    log.info("scheduler started", extra={"cron": settings.sync_cron, "next_run": next_run, "holder": holder})
    return scheduler
