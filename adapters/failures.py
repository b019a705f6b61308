"""HTTP statuses and httpx exceptions -> the ``FhirError`` family, with messages that say what to do."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from adapters.errors import (
    FhirConflictError,
    FhirHttpError,
    FhirNotFoundError,
    FhirRequestError,
    FhirServerError,
    FhirThrottledError,
    FhirTransportError,
)

Resource = dict[str, Any]


def status_error(method: str, response: httpx.Response, why: str | None, *, attempts: int = 1) -> FhirHttpError:
    """The error for an HTTP error status, carrying the server's OperationOutcome."""
    status = response.status_code
    outcome = outcome_of(response)
    where = url_path(str(response.request.url))
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    kwargs: dict[str, Any] = {"status": status, "method": method, "url": where, "outcome": outcome}
    if why is not None:
        return FhirThrottledError("OV-1033", why, **kwargs)
    if status in (429, 503):
        return FhirThrottledError("OV-1033", f"The server is overloaded{tries}; try again later", **kwargs)
    if status in (401, 403):
        return FhirRequestError(
            "OV-1034",
            "The server refused our credentials or scopes; check the FHIR auth settings",
            **kwargs,
        )
    if status in (404, 410):
        return FhirNotFoundError("OV-1035", "Not found; check the id or the base URL", **kwargs)
    if status in (409, 412):
        return FhirConflictError(
            "OV-1031",
            "Conflict: a concurrent update or several resources match a conditional write",
            **kwargs,
        )
    if status < 500:
        return FhirRequestError("OV-1030", "The server rejected the request; fix it (not retried)", **kwargs)
    return FhirServerError("OV-1032", f"The server failed{tries}; check its log, then run again", **kwargs)


def transport_error(
    method: str, url: str, exc: httpx.TransportError, attempts: int, idempotent: bool
) -> FhirTransportError:
    where = f"{method} {url_path(url)}"
    tries = f"after {attempts} attempt{'s' if attempts > 1 else ''}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return FhirTransportError(
            "OV-1020",
            f"{where}: cannot connect to the FHIR server {tries} ({exc!r}); check the URL and that it runs",
        )
    if isinstance(exc, httpx.TimeoutException):
        return FhirTransportError(
            "OV-1021",
            f"{where}: timed out {tries} ({type(exc).__name__}); raise the FHIR timeouts or check the server load",
        )
    unknown = (
        ""
        if idempotent
        else " Whether this write was applied is unknown; it was not replayed because it is not idempotent."
    )
    return FhirTransportError(
        "OV-1022",
        f"{where}: the connection failed {tries} ({exc!r}).{unknown} Run again once the server is healthy",
    )


def outcome_of(response: httpx.Response) -> Resource | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def url_path(url: str | httpx.URL) -> str:
    """The URL without its query string: enough to debug, and keeps search values out of the logs."""
    return str(url).split("?", 1)[0] or "/"
