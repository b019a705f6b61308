"""Vendored runtime data files (read with ``importlib.resources``); see README.md for sources."""

__all__: list[str] = []
