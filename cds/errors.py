"""Errors raised by the decision core, the jobs and the composition root.

Every message starts with a stable code (``OV-0xxx`` for ``cds``) and says what to do.
Codes are never reused once retired.

Exception tree::

    OncoVigilError
    ├── ConfigError          OV-0001..0019  bad settings or CLI arguments (CLI exit code 2)
    ├── SandboxError         OV-0020..0039  building, starting or stopping the HAPI sandbox
    ├── CohortError          OV-0040..0059  synthetic cohort generation and seeding
    ├── SyncError            OV-0060..0079  nightly sync and its state store
    └── DecisionError        OV-0080..0099  CDS decisions (missing patient data, ...)
    (ConfigError)            OV-0120..0129  per-drug summaries: task options, eval files (cds.summarise)

The leaves have their own trees (``adapters.errors``, ``models.errors``, ``hooks.errors``);
the CLI maps all of them to a one-line message.
"""

from __future__ import annotations


class OncoVigilError(Exception):
    """Base of every error ``cds`` raises; ``code`` is stable across releases."""

    code: str = "OV-0000"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class ConfigError(OncoVigilError):
    """Settings or arguments that cannot work; the user must change them."""


class SandboxError(OncoVigilError):
    """The HAPI FHIR sandbox could not be built, started, reached or stopped."""


class CohortError(OncoVigilError):
    """The synthetic cohort could not be generated or loaded."""


class SyncError(OncoVigilError):
    """The nightly sync failed; its watermark was not advanced."""


class DecisionError(OncoVigilError):
    """A decision could not be taken with the data available."""
