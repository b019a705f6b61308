"""Alembic revisions, one file per schema change, oldest first (``v0001_initial`` is the first release)."""

__all__: list[str] = []
