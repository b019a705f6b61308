"""``oncovigil db``: the state database's schema (Alembic revisions in ``cds/migrations``).

Every process migrates on first use anyway; these commands let an operator do it ahead of a rollout, see
where a database stands, or hand the SQL to a DBA.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cds.cli import fail, settings_of


def _engine_url(ctx: typer.Context) -> str:
    from cds.state import normalise_url

    return normalise_url(str(settings_of(ctx).state_db_url))


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="State database schema: upgrade, current revision, drift check.", no_args_is_help=True)
    app.add_typer(db, name="db")

    @db.command("upgrade")
    def upgrade_cmd(
        ctx: typer.Context,
        revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
        sql: Annotated[bool, typer.Option("--sql", help="Print the SQL for an empty database; change nothing.")]
        = False,
    ) -> None:
        """Migrate ONCOVIGIL_STATE_DB_URL to the newest schema (or print the SQL with --sql)."""
        from sqlalchemy import create_engine

        from cds.db_migrate import upgrade, upgrade_sql

        url = _engine_url(ctx)
        if sql:
            typer.echo(upgrade_sql(url, revision), nl=False)
            return
        engine = create_engine(url)
        try:
            reached = upgrade(engine, revision)
        finally:
            engine.dispose()
        typer.echo(f"state database at revision {reached}")

    @db.command("current")
    def current_cmd(ctx: typer.Context) -> None:
        """Print the database's revision and the newest one this release knows."""
        from sqlalchemy import create_engine

        from cds.db_migrate import current_revision, head_revision

        engine = create_engine(_engine_url(ctx))
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
        head = head_revision()
        state = "up to date" if current == head else "needs `oncovigil db upgrade`"
        typer.echo(f"current: {current or 'none (empty database)'}  head: {head}  ({state})")

    @db.command("check")
    def check_cmd(ctx: typer.Context) -> None:
        """Compare the database with this release's models; exit 1 when they differ (schema drift)."""
        from sqlalchemy import create_engine

        from cds.db_migrate import schema_diff

        engine = create_engine(_engine_url(ctx))
        try:
            diff = schema_diff(engine)
        finally:
            engine.dispose()
        if diff:
            for item in diff:
                typer.echo(f"  {item}")
            raise fail(f"OV-0078: the state database differs from the models in {len(diff)} place(s); "
                       "run `oncovigil db upgrade`, or add a migration if you changed cds/state.py", code=1)
        typer.echo("state database matches the models")
