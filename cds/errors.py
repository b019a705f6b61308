"""Errors raised by the decision core, the jobs and the composition root.

Every message starts with a stable code (``OV-0xxx`` for ``cds``) and says what to do.
Codes are never reused once retired.

Exception tree::

    OncoVigilError
    ├── ConfigError          OV-0001..0019  bad settings or CLI arguments (CLI exit code 2)
    ├── SandboxError         OV-0020..0039  building, starting or stopping the HAPI sandbox
    ├── CohortError          OV-0040..0059  synthetic cohort generation and seeding
    ├── SyncError            OV-0060..0079  nightly sync and its state store
    │   └── RayEngineError   OV-0110..0119  Ray engine (`sync --engine ray`); OV-0110 (ray not installed) exits 2
    ├── DecisionError        OV-0080..0099  CDS decisions (missing patient data, ...)
    │                        OV-0100..0109  DetectedIssue write-back (OV-0100: withdrawing a DetectedIssue
    │                                       that is not ours; raised by adapters as ResourceBuildError)
    └── RefineError          OV-0130..0139  ``oncovigil refine``: unsupported task, unusable labels
    (ConfigError)            OV-0120..0129  per-drug summaries: task options, eval files (cds.summarise)
    (ConfigError)            OV-0140..0149  more bad arguments and settings: `db upgrade` revision (0140),
                                            state database folder (0141), unreadable config file (0142)
    (ConfigError)            OV-0150..0159  bad eval / refine / models input: another task's --model (0150),
                                            empty data (0151), --out not a folder (0152), refine numbers out
                                            of range (0153), a summariser's unreadable event vocabulary (0154);
                                            OV-0150 also refuses another task's `export --artifact`
    (ConfigError)            OV-0160..0169  more bad settings: an unreadable trusted issuers file (0160)

A few codes of other families name settings or arguments the user must change; their errors are raised as
that family's ``...ConfigError`` (both the family and ``ConfigError``, so the CLI exits 2): ``CohortConfigError``
(OV-0043, an output folder that cannot be created), ``SyncConfigError`` (OV-0076, an unusable state database
URL), ``RayEngineConfigError`` (OV-0111, a malformed Ray address).

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


class RayEngineError(SyncError):
    """The Ray backfill engine could not start or run; the notes watermark was not advanced."""


class DecisionError(OncoVigilError):
    """A decision could not be taken with the data available."""


class RefineError(OncoVigilError):
    """``oncovigil refine`` cannot work with this task or these labels; the user must change them."""


class CohortConfigError(CohortError, ConfigError):
    """A cohort path the user chose cannot work (caught as either family; the CLI exits 2)."""


class SyncConfigError(SyncError, ConfigError):
    """A sync or state-store setting that cannot work (caught as either family; the CLI exits 2)."""


class RayEngineConfigError(RayEngineError, ConfigError):
    """A Ray engine setting or argument that cannot work (caught as either family; the CLI exits 2)."""
