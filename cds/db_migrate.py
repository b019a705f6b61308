"""Schema migrations of the state database (Alembic), run on first use and by ``oncovigil db upgrade``.

The revisions live in ``cds/migrations/versions``; ``v0001_initial`` is the schema of the first release,
APScheduler's job table included so that two replicas starting at once never race to create it.
``upgrade`` takes a lock first (a PostgreSQL advisory lock, a file lock beside a SQLite file), so concurrent
processes migrate once and the others find the database at head.
"""

from __future__ import annotations

import errno
import fcntl
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from cds.errors import ConfigError, OncoVigilError, SyncError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "ov_alembic_version"
APSCHEDULER_TABLE = "ov_apscheduler_jobs"
BASELINE = "0001"
# pg_advisory_xact_lock key: any constant that other applications sharing the database are unlikely to use
_PG_LOCK_KEY = 0x0F_C0_51_61
# Alembic's ``context`` and ``op`` are module-level proxies set for the duration of one command, so two
# threads of one process must never run commands at once (even on different databases)
_ALEMBIC_COMMANDS = threading.Lock()
# a full or failing disk is the operation failing (exit 1), not a setting the user must change (exit 2)
_OPERATIONAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def target_metadata() -> MetaData:
    """The schema head must equal: the state models plus APScheduler's own job table definition."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    from cds.state import Base

    combined = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(combined)
    # APScheduler defines its table in its constructor; an engine that never connects is enough to build it
    probe = create_engine("sqlite://")
    try:
        SQLAlchemyJobStore(engine=probe, tablename=APSCHEDULER_TABLE).jobs_t.to_metadata(combined)
    finally:
        probe.dispose()
    return combined


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    """A programmatic Alembic config (no alembic.ini): our script directory, a URL or an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # revision files must be importable module names for mypy: v0002_add_x.py, not 0002_add_x.py
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if url is not None:
        # ConfigParser interpolates "%": a URL-encoded password must survive it
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "cds/migrations/versions holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except SQLAlchemyError as exc:
        raise _database_error("read the revision of", exc) from exc


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Brings the database to ``revision`` (head by default) under a lock; returns the revision it is at."""
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    _check_revision_given(revision)
    try:
        with _ALEMBIC_COMMANDS, _migration_lock(engine) as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            current = context.get_current_revision()
            if current is not None and current not in known:
                raise SyncError(
                    "OV-0077",
                    f"the state database is at schema revision {current!r}, which this OncoVigil does not know "
                    "(a newer release migrated it); run that release or a newer one",
                )
            if current is None and _has_unversioned_schema(conn):
                _adopt_unversioned(conn)
            target = head_revision() if revision == "head" else revision
            if context.get_current_revision() != target:
                log.info("migrating the state database", extra={"from": current, "to": target})
                with _revision_argument(revision):
                    command.upgrade(alembic_config(connection=conn), revision)
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except SQLAlchemyError as exc:
        raise _database_error("migrate", exc) from exc


def upgrade_sql(url: str, revision: str = "head") -> str:
    """The SQL that ``upgrade`` would run on an empty database of ``url``'s dialect (for a DBA to review)."""
    config = alembic_config(url=url)
    buffer = io.StringIO()
    config.output_buffer = buffer
    _check_revision_given(revision)
    with _ALEMBIC_COMMANDS, _revision_argument(revision):
        command.upgrade(config, revision, sql=True)
    return buffer.getvalue()


def make_state_folder(folder: Path) -> None:
    """Creates the SQLite file's folder (SQLite creates the file, not its folder); the settings chose it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_error(f"create the state database folder {folder}", exc) from exc


def _folder_error(what: str, exc: OSError) -> OncoVigilError:
    if exc.errno in _OPERATIONAL_ERRNOS:
        return SyncError("OV-0075", f"could not {what} ({exc.strerror})")
    # mkdir's "File exists" would not say that a file sits where a folder must be
    why = "a file is in the way" if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror
    return ConfigError(
        "OV-0141", f"cannot {what} ({why}); set ONCOVIGIL_HOME (or ONCOVIGIL_STATE_DB_URL) to a writable folder"
    )


def _check_revision_given(revision: str) -> None:
    """Refuses an unknown target before the database is locked, opened or logged as migrating."""
    if not revision.strip():  # Alembic answers an empty revision with a bare AssertionError
        raise _revision_error(revision, "no revision given")
    if revision.strip() == "base":
        # Alembic resolves it to "no revision" and an upgrade then has nothing to do: it would exit 0 having
        # done nothing, while the user asked for an empty schema, which only a downgrade (not offered) makes
        raise _revision_error(revision, "that is the empty schema before every revision; downgrades are not offered")
    if "+" in revision or "-" in revision:
        return  # relative (+1, head-1): only resolvable against the database's revision, inside the command
    try:
        ScriptDirectory.from_config(alembic_config()).get_revisions(revision)
    except CommandError as exc:
        raise _revision_error(revision, str(exc)) from exc


@contextmanager
def _revision_argument(revision: str) -> Iterator[None]:
    """Alembic's CommandError here means a target it cannot resolve or reach: the user's argument, not ours."""
    try:
        yield
    except CommandError as exc:
        raise _revision_error(revision, str(exc)) from exc


def _revision_error(revision: str, reason: str) -> ConfigError:
    head = head_revision()
    known = ", ".join(
        f"{s.revision} (head)" if s.revision == head else s.revision
        for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    )
    return ConfigError(
        "OV-0140",
        f"cannot upgrade to revision {revision!r} ({reason}); give head, or one of this release's revisions: "
        f"{known} (`oncovigil db current` shows where the database stands)",
    )


def schema_diff(engine: Engine) -> list[Any]:
    """Alembic's autogenerate comparison of the database against the models; empty when they agree."""
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True, "compare_server_default": True},
            )
            return list(compare_metadata(context, target_metadata()))
    except SQLAlchemyError as exc:
        raise _database_error("inspect", exc) from exc


def _database_error(what: str, exc: SQLAlchemyError) -> SyncError:
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return SyncError(
        "OV-0075",
        f"could not {what} the state database ({type(exc).__name__}: {first_line}); check ONCOVIGIL_STATE_DB_URL, "
        "that the server is up, and that its user may create tables",
    )


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """One open transaction, held exclusively against every other process migrating the same database."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            # released at commit; a second replica waits here, then finds the database at head
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield conn
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        with engine.begin() as conn:
            yield conn
        return
    lock_path = Path(database + ".migrate.lock")
    make_state_folder(lock_path.parent)
    try:
        lock_file = lock_path.open("a")
    except OSError as exc:
        raise _folder_error(f"create the migration lock file {lock_path}", exc) from exc
    with lock_file as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _has_unversioned_schema(conn: Connection) -> bool:
    """A database created before migrations existed (``create_all``): it has our tables but no version."""
    return "ov_watermark" in inspect(conn).get_table_names()


def _adopt_unversioned(conn: Connection) -> None:
    # create_all added every missing table at each start, so such a database is the baseline minus, at most,
    # the scheduler's table: complete it (checkfirst) and stamp the baseline; later revisions then apply
    target_metadata().create_all(conn, checkfirst=True)
    command.stamp(alembic_config(connection=conn), BASELINE)
    log.warning("adopted a state database created before migrations", extra={"revision": BASELINE})
