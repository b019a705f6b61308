"""Fixtures for the state database on both backends: a throwaway PostgreSQL server per test session.

``pg_url`` starts a real PostgreSQL (``scripts/postgres.sh``, which installs Debian's ``postgresql`` when it
is missing) on 127.0.0.1 once per session and stops it at the end; ``ONCOVIGIL_TEST_PG_URL`` points the
tests at a server that is already running instead (a superuser URL: each test gets its own database).
A PostgreSQL that cannot start fails the run in CI (``CI`` set) or with ``ONCOVIGIL_REQUIRE_POSTGRES=1``,
and skips the PostgreSQL tests otherwise. ``state_url`` runs a test once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parents[2]
POSTGRES_SH = REPO / "scripts" / "postgres.sh"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") or os.environ.get("ONCOVIGIL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (PostgreSQL required: CI or ONCOVIGIL_REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A superuser URL of a live PostgreSQL server (``postgresql+psycopg://...``)."""
    external = os.environ.get("ONCOVIGIL_TEST_PG_URL")
    if external:
        yield external
        return
    # under /tmp, not pytest's private tmp dir: the server runs as the unprivileged postgres user
    cluster = Path(tempfile.mkdtemp(prefix="oncovigil-pg-", dir="/tmp"))
    try:
        started = subprocess.run(
            ["bash", str(POSTGRES_SH), "start", str(cluster)], capture_output=True, text=True, timeout=900,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(cluster, ignore_errors=True)
        _unavailable(f"PostgreSQL could not be started: {exc}")
    if started.returncode != 0:
        subprocess.run(["bash", str(POSTGRES_SH), "stop", str(cluster)], capture_output=True, timeout=120)
        shutil.rmtree(cluster, ignore_errors=True)
        _unavailable(f"PostgreSQL could not be started: {started.stderr.strip()[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        stopped = subprocess.run(["bash", str(POSTGRES_SH), "stop", str(cluster)], capture_output=True, text=True,
                                 timeout=120)
        shutil.rmtree(cluster, ignore_errors=True)
        assert stopped.returncode == 0, f"PostgreSQL did not stop: {stopped.stderr}"


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A fresh, empty database on the session server for one test (dropped afterwards)."""
    name = f"ovt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            # FORCE ends connections a failed test left open (PostgreSQL 13+)
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty state database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url
