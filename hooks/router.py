"""The CDS Hooks endpoints: discovery, service calls and feedback, as one FastAPI router.

Routes stay thin: parse, call the decision service once, check the answer, serialise with empty fields
omitted. The per-request policy (JWT, body limit, error mapping) is in :mod:`hooks.transport`.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the per-router ``ServiceId`` annotation,
# which is local to create_cds_router and so cannot be resolved from a string later.
import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from hooks.cards import CdsResponse
from hooks.config import HooksConfig
from hooks.errors import BadHookRequest, CardInvariantError, DecisionTimeout, HooksConfigError, HooksError
from hooks.jwt import JwtVerifier, VerifiedClient
from hooks.protocol import DecisionService, HookCall
from hooks.requests import FeedbackRequest, HookRequest
from hooks.services import DiscoveryResponse, ServiceDefinition
from hooks.transport import InternalError, OperationOutcomeBody, Problem, make_route_class

log = logging.getLogger("hooks.router")

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="cdsHooksJwt",
    bearerFormat="JWT",
    description="The EHR's JWT (ES384 or RS384) with aud = the exact URL called (CDS Hooks 2.0).",
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Malformed JSON or not a CDS Hooks 2.0 request"},
    401: {"model": Problem, "description": "JWT missing or not trusted"},
    404: {"model": Problem, "description": "No CDS service with this id"},
    413: {"model": Problem, "description": "Body larger than the configured limit"},
    500: {"model": Problem, "description": "Our fault (logged with its code)"},
}
_SERVICE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    412: {"model": OperationOutcomeBody, "description": "Required data neither prefetched nor retrievable"},
    503: {"model": Problem, "description": "The decision took longer than its deadline"},
}


def check_setup(services: Sequence[ServiceDefinition], verifier: JwtVerifier | None, config: HooksConfig) -> None:
    """Refuse a configuration that is unsafe or cannot serve: no JWT outside development, duplicate ids."""
    if verifier is None and config.require_jwt:
        raise HooksConfigError("require_jwt is on but no JwtVerifier was given", code="OV-3007")
    if verifier is None and config.environment != "development":
        raise HooksConfigError("a JwtVerifier is required outside development", code="OV-3002")
    try:
        DiscoveryResponse(services=[ServiceDefinition.model_validate(s.model_dump()) for s in services])
    except ValidationError as exc:
        raise HooksConfigError(f"invalid CDS service definitions: {exc}", code="OV-3008") from exc


def checked_response(result: object) -> dict[str, Any]:
    """The decision's answer as wire JSON, re-validated: a response that breaks the spec is never sent."""
    if not isinstance(result, CdsResponse):
        raise CardInvariantError(f"decision service returned {type(result).__name__}, not CdsResponse", code="OV-3071")
    try:
        return CdsResponse.model_validate(result.to_wire()).to_wire()
    except (ValidationError, PydanticSerializationError, ValueError, TypeError, AttributeError) as exc:
        raise CardInvariantError(f"response breaks the CDS Hooks card rules: {_first_error(exc)}") from exc


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors(include_input=False)
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errs[:3])
    return type(exc).__name__


def create_cds_router(
    services: Sequence[ServiceDefinition],
    decisions: DecisionService,
    verifier: JwtVerifier | None,
    config: HooksConfig,
) -> APIRouter:
    """The CDS Hooks endpoints under ``/cds-services``; include it in any FastAPI app (CORS is app-level:
    see :func:`hooks.app.install_cors`)."""
    check_setup(services, verifier, config)
    by_id = {s.id: s for s in services}
    discovery = DiscoveryResponse(services=list(services)).to_wire()
    # Documented as an enum so clients and fuzzers see the real ids; other ids still get a JSON 404.
    ServiceId = Annotated[
        str, Path(description="A service id from discovery", json_schema_extra={"enum": sorted(by_id)})
    ]
    router = APIRouter(
        route_class=make_route_class(verifier=verifier, config=config, service_ids=frozenset(by_id)),
        tags=["CDS Hooks"],
        dependencies=[Security(_bearer)],
    )

    @router.get(
        "/cds-services",
        response_model=DiscoveryResponse,
        responses={k: v for k, v in _ERRORS.items() if k != 404},
        summary="Discovery: the CDS services offered",
    )
    async def discover() -> Response:
        return JSONResponse(discovery)

    @router.post(
        "/cds-services/{service_id}",
        response_model=CdsResponse,
        responses=_SERVICE_ERRORS,
        summary="Call a CDS service (order-select, order-sign, patient-view)",
    )
    async def call_service(service_id: ServiceId, body: Annotated[HookRequest, Body()], request: Request) -> Response:
        service = by_id[service_id]
        if body.hook != service.hook:
            raise BadHookRequest(
                f"service {service_id!r} answers hook {service.hook!r}, not {body.hook!r}", code="OV-3023"
            )
        client: VerifiedClient | None = getattr(request.state, "hooks_client", None)
        call = HookCall(
            service=service,
            hook=body.hook,
            hook_instance=body.hookInstance,
            context=body.context,
            prefetch=body.prefetch,
            fhir_server=body.fhirServer,
            fhir_authorization=body.fhirAuthorization,
            deadline=time.monotonic() + config.decision_timeout_s,
            client=client,
        )
        result = await _decide(decisions, call, config)
        wire = checked_response(result)
        log.info(
            "cds decision",
            extra={
                "service_id": service_id,
                "hook_instance": call.hook_instance,
                "cards": len(wire["cards"]),
            },
        )
        return JSONResponse(wire)

    @router.post(
        "/cds-services/{service_id}/feedback",
        responses=_ERRORS,
        summary="Feedback: what the clinician did with our cards",
        response_class=Response,
    )
    async def feedback(service_id: ServiceId, body: Annotated[FeedbackRequest, Body()]) -> Response:
        try:
            await decisions.record_feedback(service_id, body.feedback)
        except HooksError:
            raise
        except Exception as exc:
            log.exception("OV-3099: feedback not stored", extra={"service_id": service_id})
            raise InternalError(f"feedback could not be stored ({type(exc).__name__}); retry later") from exc
        return Response(status_code=200)

    return router


async def _decide(decisions: DecisionService, call: HookCall, config: HooksConfig) -> object:
    try:
        async with asyncio.timeout(config.decision_timeout_s + config.timeout_grace_s) as budget:
            return await decisions.decide(call)
    except HooksError:
        raise
    except ValidationError as exc:
        # A card model refused at construction inside the decision service: our bug, never sent.
        raise CardInvariantError(f"decision service built an invalid card: {_first_error(exc)}") from exc
    except TimeoutError as exc:
        if budget.expired():
            raise DecisionTimeout(
                f"no decision within {config.decision_timeout_s:.1f} s; retry, or raise decision_timeout_s",
            ) from exc
        raise InternalError("decision service timed out on its own I/O; see the service log") from exc
    except Exception as exc:
        log.exception("OV-3099: decision service failed", extra={"service_id": call.service_id})
        raise InternalError(f"decision failed ({type(exc).__name__}); see the service log") from exc
