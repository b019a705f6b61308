"""App factory for the CDS Hooks endpoints (the composition root adds its own routes and lifespan)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hooks.config import HooksConfig
from hooks.jwt import JwtVerifier
from hooks.protocol import DecisionService
from hooks.router import create_cds_router
from hooks.services import ServiceDefinition

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def install_cors(app: FastAPI, config: HooksConfig) -> None:
    """Let browser EHRs (the CDS Hooks sandbox) call us from the configured origins; nothing when none."""
    if not config.cors_allow_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.cors_allow_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )


def tidy_openapi(app: FastAPI) -> None:
    """Drop FastAPI's automatic 422 from the CDS Hooks operations: they answer 400 instead."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = original()
            for path, operations in doc.get("paths", {}).items():
                if path.endswith("/cds-services") or "/cds-services/" in path:
                    for operation in operations.values():
                        operation.get("responses", {}).pop("422", None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_hooks_app(
    services: Sequence[ServiceDefinition],
    decisions: DecisionService,
    verifier: JwtVerifier | None,
    config: HooksConfig,
    *,
    title: str = "OncoVigil CDS Hooks",
    version: str = "0.1.0",
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """A FastAPI app serving ``/cds-services`` (discovery, services, feedback) with CORS from ``config``.

    The composition root may add its own routes (``/healthz``) to the returned app and pass a ``lifespan``
    that opens and closes what the decision service needs.
    """
    app = FastAPI(title=title, version=version, lifespan=lifespan)
    app.include_router(create_cds_router(services, decisions, verifier, config))
    install_cors(app, config)
    tidy_openapi(app)
    return app
