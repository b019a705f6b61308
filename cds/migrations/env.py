"""Alembic environment: run by ``alembic.command`` from ``cds.db_migrate``, never imported by the service.

The caller hands over an open connection in ``config.attributes["connection"]`` (online mode, inside its
lock and transaction); without one, ``sqlalchemy.url`` is used, and ``--sql`` renders a script (offline).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cds.db_migrate import VERSION_TABLE, target_metadata

config = context.config
metadata = target_metadata()


def _offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True,
        version_table=VERSION_TABLE, compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        assert url, "cds.db_migrate sets sqlalchemy.url or hands over a connection"
        engine = create_engine(url)
        try:
            with engine.begin() as own:
                _run(own)
        finally:
            engine.dispose()
        return
    _run(connection)


def _run(connection: object) -> None:
    # SQLite cannot ALTER most things in place: batch mode rebuilds the table instead
    sqlite = getattr(getattr(connection, "dialect", None), "name", "") == "sqlite"
    context.configure(
        connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,  # type: ignore[arg-type]
        compare_type=True, render_as_batch=sqlite,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _offline()
else:
    _online()
