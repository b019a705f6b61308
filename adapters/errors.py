"""Errors raised at the FHIR boundary.

Every message starts with a stable code (``OV-1xxx`` for ``adapters``) and says what to do.
httpx exceptions, HTTP statuses and validation failures become this family where they happen;
a server's OperationOutcome travels with the error (``outcome``) and its diagnostics are in the message.
Codes are never reused once retired.

Exception tree::

    AdapterError                      code attribute, never raised itself
    ├── FhirConfigError      OV-1001..1009  bad client/auth configuration (user error, CLI exit 2)
    ├── FhirAuthError        OV-1010..1019  token endpoint refused us, or 401/403 after one refresh
    ├── FhirTransportError   OV-1020..1029  unreachable, timed out or connection dropped, retries spent
    ├── FhirHttpError        OV-1030..1049  the server answered an error status (keeps its OperationOutcome)
    │   ├── FhirRequestError   OV-1030      4xx: our request is wrong; never retried
    │   │   ├── FhirNotFoundError OV-1035   404/410: the resource or endpoint does not exist
    │   │   └── (OV-1034)                   401/403 from the FHIR server: credentials or scopes refused
    │   ├── FhirConflictError  OV-1031      409/412: version conflict, or several matches for a conditional
    │   ├── FhirServerError    OV-1032      5xx that is not retried (500) or still failing after retries
    │   └── FhirThrottledError OV-1033      429/503 whose Retry-After exceeds our limit, or retries spent
    ├── FhirProtocolError    OV-1050..1059  an answer that is not the FHIR we expect (not JSON, bad link)
    ├── CapabilityError      OV-1060..1069  the server lacks FHIR 4.0.x or interactions we need
    ├── MappingError         OV-1070..1079  a resource cannot be mapped to our records
    ├── ResourceBuildError   OV-1080..1089  a resource we built failed R4 validation before leaving
    └── LoadInputError       OV-1090..1099  bulk-load input we refuse (no id, numeric id, bad NDJSON)
"""

from __future__ import annotations

from typing import Any

from adapters.outcome import OutcomeIssue, diagnostics_of, parse_outcome


class AdapterError(Exception):
    """Base of every error ``adapters`` raises; ``code`` is stable across releases."""

    code: str = "OV-1000"
    user_error: bool = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class FhirConfigError(AdapterError):
    """Client or auth configuration that cannot work; the user must change it."""

    user_error = True


class FhirAuthError(AdapterError):
    """Authentication failed at the token endpoint or at the FHIR server."""


class FhirTransportError(AdapterError):
    """The server could not be reached or the connection failed, after the allowed retries."""


class FhirHttpError(AdapterError):
    """The server answered an error status; ``outcome`` holds its OperationOutcome (may be empty)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int,
        method: str,
        url: str,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.url = url
        self.outcome = outcome
        self.issues: list[OutcomeIssue] = parse_outcome(outcome) if outcome is not None else []
        diagnostics = diagnostics_of(self.issues)
        detail = f" Server says: {diagnostics}" if diagnostics else " (no OperationOutcome in the answer)"
        super().__init__(code, f"{method} {url} -> HTTP {status}. {message}{detail}")


class FhirRequestError(FhirHttpError):
    """A 4xx other than 409/412/429: the request is wrong and retrying cannot help."""


class FhirNotFoundError(FhirRequestError):
    """404 or 410: the resource (or the whole endpoint) does not exist."""


class FhirConflictError(FhirHttpError):
    """409 or 412: a concurrent version or several resources match a conditional write."""


class FhirServerError(FhirHttpError):
    """5xx: the server failed."""


class FhirThrottledError(FhirHttpError):
    """The server keeps asking us to wait (429/503) beyond what we are allowed to wait."""


class FhirProtocolError(AdapterError):
    """The answer is not the FHIR R4 JSON we expect."""


class CapabilityError(AdapterError):
    """The server's CapabilityStatement lacks something OncoVigil needs."""

    user_error = True


class MappingError(AdapterError):
    """A FHIR resource cannot be mapped to an OncoVigil record."""


class ResourceBuildError(AdapterError):
    """A resource we built is not valid FHIR R4; nothing was sent."""


class LoadInputError(AdapterError):
    """Bulk-load input that cannot be loaded idempotently."""

    user_error = True
