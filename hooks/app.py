"""App factory for the CDS Hooks endpoints alone (the composition root may instead include the router)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hooks.config import HooksConfig
from hooks.jwt import JwtVerifier
from hooks.protocol import DecisionService
from hooks.router import create_cds_router
from hooks.services import ServiceDefinition


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


def create_hooks_app(
    services: Sequence[ServiceDefinition],
    decisions: DecisionService,
    verifier: JwtVerifier | None,
    config: HooksConfig,
    *,
    title: str = "OncoVigil CDS Hooks",
    version: str = "0.1.0",
) -> FastAPI:
    """A FastAPI app serving ``/cds-services`` (discovery, services, feedback) with CORS from ``config``."""
    app = FastAPI(title=title, version=version)
    app.include_router(create_cds_router(services, decisions, verifier, config))
    install_cors(app, config)
    return app
