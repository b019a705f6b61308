"""Decision core and composition root of OncoVigil (the only package that knows the others)."""

from cds.errors import ConfigError, OncoVigilError
from cds.settings import Settings, load_settings

__all__ = ["ConfigError", "OncoVigilError", "Settings", "load_settings"]
