"""What happens around every CDS Hooks endpoint, before and after the endpoint itself.

Order per request: body size limit (413) -> JWT (401) -> known service (404) -> JSON and schema (400) ->
endpoint. Every error becomes JSON with a stable code (412 as an OperationOutcome), so nothing leaves as an
unexplained 500. It lives in a route class rather than app middleware so that a router included in any
FastAPI app behaves the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope

from hooks.config import HooksConfig
from hooks.errors import (
    BadHookRequest,
    HooksError,
    PayloadTooLarge,
    PrefetchUnavailable,
    UnknownService,
)
from hooks.jwt import JwtVerifier

log = logging.getLogger("hooks.http")

ERROR_CODE_SYSTEM = "https://oncovigil.org/fhir/CodeSystem/error-code"
Kind = Literal["discovery", "service", "feedback"]


class Problem(BaseModel):
    """Error body of every non-2xx answer except 412."""

    code: str = Field(examples=["OV-3021"])
    message: str
    errors: list[dict[str, str]] | None = None


class OperationOutcomeBody(BaseModel):
    """FHIR OperationOutcome (412: required data unavailable)."""

    resourceType: Literal["OperationOutcome"]
    issue: list[dict[str, Any]]


class InternalError(HooksError):
    """Anything unexpected escaping the decision service (logged with its type, answered 500)."""

    code = "OV-3099"


def operation_outcome(exc: PrefetchUnavailable) -> dict[str, Any]:
    """The 412 body: one issue per missing item so the EHR can tell what to send."""
    issue: dict[str, Any] = {
        "severity": "error",
        "code": "incomplete",
        "details": {"coding": [{"system": ERROR_CODE_SYSTEM, "code": exc.code}], "text": str(exc)},
        "diagnostics": str(exc),
    }
    if exc.missing:
        issue["expression"] = [f"prefetch.{key}" for key in exc.missing]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_response(exc: HooksError) -> JSONResponse:
    if isinstance(exc, PrefetchUnavailable):
        return JSONResponse(operation_outcome(exc), status_code=exc.http_status, media_type="application/fhir+json")
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.http_status == 401 else None
    body: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if exc.errors:
        body["errors"] = exc.errors
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def describe_validation(exc: RequestValidationError) -> BadHookRequest:
    """A 400 naming where the body breaks the schema; input values are never echoed (they may be PHI)."""
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        ctx = problems[0].get("ctx") or {}
        where = problems[0].get("loc", ("body", "?"))[-1]
        return BadHookRequest(f"body is not valid JSON ({ctx.get('error', 'decode error')} at {where})", code="OV-3022")
    listed = []
    for p in problems[:10]:
        loc = ".".join(str(part) for part in p.get("loc", ()) if part != "body") or "(body)"
        listed.append({"loc": loc, "msg": str(p.get("msg", "invalid"))})
    summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in listed[:3])
    return BadHookRequest(f"request does not follow CDS Hooks 2.0: {summary}", code="OV-3021", errors=listed)


class LimitedRequest(Request):
    """A request whose body may not exceed ``limit`` bytes, checked before and while reading."""

    def __init__(self, scope: Scope, receive: Receive, limit: int) -> None:
        super().__init__(scope, receive)
        self._limit = limit

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._limit:
                raise self._too_large()
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > self._limit:
                    raise self._too_large()
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body exceeds {self._limit} bytes; send less prefetch data")


def kind_of(path: str) -> Kind:
    if path.rstrip("/").endswith("/cds-services"):
        return "discovery"
    return "feedback" if path.endswith("/feedback") else "service"


def called_url(request: Request, config: HooksConfig, kind: Kind, service_id: str | None) -> str:
    """The URL the EHR called, as it saw it: the JWT ``aud`` must name it."""
    if config.public_base_url is not None:
        url = config.public_base_url.rstrip("/") + "/cds-services"
        if kind != "discovery":
            url += f"/{service_id}"
        return url + "/feedback" if kind == "feedback" else url
    scheme, host = request.url.scheme, request.url.netloc
    if config.trust_forwarded_headers:
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip() or host
    return f"{scheme}://{host}{request.url.path}"


def audiences_for(url: str, kind: Kind) -> list[str]:
    # Clients differ on feedback: some sign it for the feedback URL, some for the service URL.
    if kind == "feedback":
        return [url, url.rstrip("/").removesuffix("/feedback")]
    return [url]


def make_route_class(
    *, verifier: JwtVerifier | None, config: HooksConfig, service_ids: Collection[str]
) -> type[APIRoute]:
    """An APIRoute subclass applying the per-request policy above to every route of the hooks router."""

    class HooksRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            original = super().get_route_handler()
            kind = kind_of(self.path)

            async def handler(request: Request) -> Response:
                started = time.perf_counter()
                limited = LimitedRequest(request.scope, request.receive, config.max_body_bytes)
                service_id = request.path_params.get("service_id")
                try:
                    response = await _guarded(limited, kind, service_id, original)
                except HooksError as exc:
                    response = error_response(exc)
                    level = logging.ERROR if exc.http_status >= 500 else logging.INFO
                    log.log(level, "%s", exc, extra={"service_id": service_id, "status": exc.http_status})
                except Exception as exc:
                    log.exception("OV-3099: unexpected error", extra={"service_id": service_id})
                    response = error_response(
                        InternalError(f"internal error ({type(exc).__name__}); see the service log")
                    )
                log.info(
                    "cds %s",
                    kind,
                    extra={
                        "service_id": service_id,
                        "status": response.status_code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
                return response

            return handler

    async def _guarded(
        request: LimitedRequest,
        kind: Kind,
        service_id: str | None,
        original: Callable[[Request], Awaitable[Response]],
    ) -> Response:
        if verifier is not None:
            url = called_url(request, config, kind, service_id)
            client = await verifier.verify(request.headers.get("authorization"), audiences_for(url, kind))
            request.state.hooks_client = client
        if kind != "discovery" and service_id not in service_ids:
            raise UnknownService(f"no CDS service {str(service_id)[:100]!r}; GET /cds-services lists the services")
        if request.method == "POST":
            await request.body()
        try:
            return await original(request)
        except RequestValidationError as exc:
            raise describe_validation(exc) from None
        except HTTPException as exc:
            if exc.status_code >= 500:
                raise
            raise BadHookRequest(f"request body could not be read: {exc.detail}", code="OV-3022") from None

    return HooksRoute
