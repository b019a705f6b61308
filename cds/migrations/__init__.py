"""Alembic migrations of the state database (``cds/db_migrate.py`` runs them; never imported by the service)."""

__all__: list[str] = []
