"""Alembic migrations of the state database, on SQLite and on a real PostgreSQL (``state_url``).

Head must equal the models (autogenerate's comparison finds nothing), first use must migrate once however
many processes start together, and the operator commands must say where a database stands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, text

from cds.db_migrate import (
    APSCHEDULER_TABLE,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    schema_diff,
    target_metadata,
    upgrade,
    upgrade_sql,
)
from cds.errors import SyncError
from cds.state import Base, StateStore

OUR_TABLES = {*Base.metadata.tables, APSCHEDULER_TABLE}


def _engine(url: str) -> Engine:
    return create_engine(url)


def test_first_use_migrates_to_head_and_the_schema_equals_the_models(state_url: str) -> None:
    store = StateStore(state_url)
    try:
        assert current_revision(store.engine) == head_revision() == "0001"
        assert set(inspect(store.engine).get_table_names()) == OUR_TABLES | {VERSION_TABLE}
        assert schema_diff(store.engine) == []
    finally:
        store.close()


def test_the_comparison_notices_drift(state_url: str) -> None:
    store = StateStore(state_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_ov_finding_kind"))
            conn.execute(text("ALTER TABLE ov_run ADD COLUMN note VARCHAR(10)"))
        kinds = sorted(item[0] for item in schema_diff(store.engine))
        assert kinds == ["add_index", "remove_column"]
    finally:
        store.close()


def test_the_initial_revision_downgrades_to_nothing_and_upgrades_again(state_url: str) -> None:
    engine = _engine(state_url)
    try:
        assert upgrade(engine) == "0001"
        with engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), "base")
        assert set(inspect(engine).get_table_names()) == {VERSION_TABLE}
        assert current_revision(engine) is None
        assert upgrade(engine) == "0001"
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


FIRST_USE = """
import sys, time
from cds.state import StateStore
from cds.db_migrate import current_revision
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all processes start migrating at the same instant
store = StateStore(sys.argv[1])
print(current_revision(store.engine))
store.close()
"""


def test_replicas_starting_together_migrate_once(state_url: str) -> None:
    # processes, not threads: the lock under test is the database's (advisory lock / file lock)
    start_at = time.time() + 5.0
    procs = [
        subprocess.Popen([sys.executable, "-c", FIRST_USE, state_url, str(start_at)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    assert [(p.returncode, out.strip()) for p, (out, _) in zip(procs, outcomes, strict=True)] == [(0, "0001")] * 4, [
        err[-600:] for _, err in outcomes
    ]
    engine = _engine(state_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == ["0001"]
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


def test_threads_of_one_process_migrating_different_databases_do_not_collide(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'db{i}.sqlite'}" for i in range(4)]
    barrier = threading.Barrier(len(urls))

    def first_use(url: str) -> str | None:
        barrier.wait()
        store = StateStore(url)
        try:
            return current_revision(store.engine)
        finally:
            store.close()

    with ThreadPoolExecutor(len(urls)) as pool:
        assert list(pool.map(first_use, urls)) == ["0001"] * len(urls)


def test_a_database_created_before_migrations_is_adopted(state_url: str) -> None:
    engine = _engine(state_url)
    try:
        Base.metadata.create_all(engine)  # what the service did before migrations (no scheduler table yet)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO ov_watermark (resource_type, value, updated_at) "
                              "VALUES ('DocumentReference', '2026-01-01T00:00:00Z', CURRENT_TIMESTAMP)"))
    finally:
        engine.dispose()
    store = StateStore(state_url)
    try:
        assert store.get_watermark("DocumentReference") == "2026-01-01T00:00:00Z"
        assert current_revision(store.engine) == "0001"
        assert schema_diff(store.engine) == []
    finally:
        store.close()


def test_a_database_migrated_by_a_newer_release_is_refused(state_url: str) -> None:
    StateStore(state_url).close()
    engine = _engine(state_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(SyncError, match=r"OV-0077.*'9999'"):
        StateStore(state_url)


def test_an_unreachable_server_is_a_coded_error() -> None:
    with pytest.raises(SyncError, match="OV-0075"):
        StateStore("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")


def test_the_postgresql_script_for_a_dba_creates_every_table() -> None:
    sql = upgrade_sql("postgresql+psycopg://ov@db.invalid/ov")
    for table in OUR_TABLES:
        assert f"CREATE TABLE {table} (" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql and f"INSERT INTO {VERSION_TABLE}" in sql and "COMMIT;" in sql
    assert set(target_metadata().tables) == OUR_TABLES


def _cli(args: list[str], url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONCOVIGIL_HOME": str(home), "ONCOVIGIL_STATE_DB_URL": url}
    return subprocess.run([str(Path(sys.executable).parent / "oncovigil"), *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_the_db_commands_report_upgrade_and_check(pg_database: str, tmp_path: Path) -> None:
    # one backend only: each command is a process start (~4 s); the functions behind them run on both above
    before = _cli(["db", "current"], pg_database, tmp_path)
    assert before.returncode == 0, before.stderr
    assert "current: none (empty database)  head: 0001  (needs `oncovigil db upgrade`)" in before.stdout
    upgraded = _cli(["db", "upgrade"], pg_database, tmp_path)
    assert (upgraded.returncode, upgraded.stdout.strip()) == (0, "state database at revision 0001"), upgraded.stderr
    engine = _engine(pg_database)
    try:
        assert schema_diff(engine) == []
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_ov_jti_expires_at"))
    finally:
        engine.dispose()
    drift = _cli(["db", "check"], pg_database, tmp_path)
    assert drift.returncode == 1 and "OV-0078" in drift.stderr and "ix_ov_jti_expires_at" in drift.stdout


def test_db_upgrade_sql_prints_the_script_and_touches_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'untouched.db'}"
    result = _cli(["db", "upgrade", "--sql"], url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE ov_jti" in result.stdout
    assert not (tmp_path / "untouched.db").exists()
