"""The nightly job inside ``oncovigil serve``: APScheduler 3.x with its job store in the state database.

``max_instances=1`` and ``coalesce`` keep one run per process; the database lease taken by
``run_sync_once`` keeps one run across replicas.
"""

from __future__ import annotations

import asyncio
import logging

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from cds.errors import ConfigError, SyncError
from cds.runner import run_sync_once
from cds.settings import Settings
from cds.state import StateStore

log = logging.getLogger(__name__)
JOB_ID = "oncovigil-nightly-sync"


def nightly_sync(settings: Settings, holder: str) -> None:
    """The scheduled callable (its arguments are pickled into the job store, so: plain data only).

    Failures are logged and recorded in the run table, never raised into APScheduler.
    """
    store = StateStore(str(settings.state_db_url))
    try:
        asyncio.run(run_sync_once(settings, store, holder=holder))
    except SyncError as exc:
        log.warning("scheduled sync did not complete", extra={"code": exc.code})
    finally:
        store.close()


def cron_trigger(settings: Settings) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(settings.sync_cron, timezone=settings.sync_timezone)
    except ValueError as exc:
        raise ConfigError("OV-0015", f"sync_cron {settings.sync_cron!r} is not a crontab expression: {exc}") from exc


def start_scheduler(settings: Settings, store: StateStore, holder: str) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=store.engine, tablename="ov_apscheduler_jobs")},
        timezone=settings.sync_timezone,
    )
    scheduler.add_job(
        nightly_sync,
        trigger=cron_trigger(settings),
        args=[settings, holder],
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
    log.info("scheduler started", extra={"cron": settings.sync_cron, "next_run": next_run})
    return scheduler
