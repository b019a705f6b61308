"""Composition root of the service: ``create_app(settings)`` wires the concrete leaves together.

No import-time globals: the FastAPI app, the state store, the decision service and the scheduler are
created here and closed by the lifespan.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from cds.decisions import CdsDecisions, OrderAssessor, PreparedContextCache
from cds.errors import ConfigError
from cds.settings import Settings
from cds.state import StateStore
from hooks import (
    HooksConfig,
    HooksConfigError,
    IssuerTrust,
    JwtConfig,
    JwtVerifier,
    create_hooks_app,
    default_services,
)

log = logging.getLogger(__name__)


class StoreReplayStore:
    """The JWT replay store on the state database, so every replica refuses a jti another one saw."""

    def __init__(self, store: StateStore, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s

    async def first_use(self, key: str, expires_at: float) -> bool:
        ttl = max(self._ttl_s, expires_at - time.time())
        # the key holds iss and jti, which an EHR may make long: a digest fits the column on every database
        digest = hashlib.sha256(key.encode()).hexdigest()
        return await asyncio.to_thread(self._store.remember_jti, "jwt", digest, ttl)


def load_trusted_issuers(settings: Settings) -> dict[str, IssuerTrust]:
    """``{"iss": {"jwks": {...}, "allowed_jku": [...], "tenants": [...]}}`` from the configured JSON file."""
    path = settings.cds_trusted_issuers_file
    if path is None:
        return {}
    where = f"trusted issuers file {path} (ONCOVIGIL_CDS_TRUSTED_ISSUERS_FILE)"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("OV-0010", f"trusted issuers file {path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError("OV-0011", f"trusted issuers file {path} is not JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("OV-0011", f"{where} is not JSON: not UTF-8 text (bad byte at offset {exc.start})") from exc
    except RecursionError as exc:
        # the json module parses nested arrays and objects recursively, so deep nesting exhausts the stack
        raise ConfigError("OV-0011", f"{where} is not usable JSON: nested too deeply") from exc
    except OSError as exc:
        raise ConfigError(
            "OV-0160", f"{where} cannot be read ({exc.strerror or exc}); name a readable JSON file"
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError("OV-0012", f"trusted issuers file {path} must map issuer URLs to their trust")
    return {iss: _issuer_trust(where, iss, trust) for iss, trust in raw.items()}


def _issuer_trust(where: str, iss: str, trust: Any) -> IssuerTrust:
    # a hand-edited file: every shape problem is the operator's to fix, never a KeyError from deep inside
    if not isinstance(trust, dict) or not isinstance(trust.get("jwks"), dict):
        raise ConfigError("OV-0012", f"{where}: issuer {iss!r} needs an object with a \"jwks\" object")
    allowed_jku = trust.get("allowed_jku", [])
    if not isinstance(allowed_jku, list) or not all(isinstance(u, str) for u in allowed_jku):
        raise ConfigError("OV-0012", f"{where}: issuer {iss!r}: \"allowed_jku\" must be a list of URLs")
    tenants = trust.get("tenants")
    if tenants is not None and (not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants)):
        raise ConfigError("OV-0012", f"{where}: issuer {iss!r}: \"tenants\" must be a list of strings or null")
    return IssuerTrust(jwks=trust["jwks"], allowed_jku=tuple(allowed_jku), tenants=tenants)


@dataclass
class ServiceParts:
    store: StateStore
    decisions: CdsDecisions


def build_hooks_config(settings: Settings) -> HooksConfig:
    try:
        return HooksConfig(
            environment=settings.environment,
            require_jwt=settings.cds_require_jwt,
            public_base_url=settings.cds_public_base_url,
            max_body_bytes=settings.cds_max_body_bytes,
            cors_allow_origins=tuple(settings.cds_cors_origins),
            decision_timeout_s=settings.cds_decision_timeout_s,
        )
    except HooksConfigError as exc:
        raise ConfigError("OV-0013", str(exc)) from exc


def create_app(
    settings: Settings, *, store: StateStore | None = None, assessor: OrderAssessor | None = None,
    run_scheduler: bool = False,
) -> FastAPI:
    """The CDS Hooks service with health endpoints; the nightly scheduler too when asked."""
    state = store or StateStore(str(settings.state_db_url))
    config = build_hooks_config(settings)
    verifier = None
    if settings.cds_require_jwt:
        try:
            jwt_config = JwtConfig(trusted_issuers=load_trusted_issuers(settings))
        except HooksConfigError as exc:
            # the hooks code would make a second code on the line; ours is the one the CLI documents
            raise ConfigError("OV-0014", f"{exc.detail}; set ONCOVIGIL_CDS_TRUSTED_ISSUERS_FILE") from exc
        verifier = JwtVerifier(jwt_config, StoreReplayStore(state, jwt_config.replay_ttl_s))
    decisions = CdsDecisions(state, assessor, PreparedContextCache(settings.cds_context_cache_ttl_s))
    app = create_hooks_app(default_services(), decisions, verifier, config)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    scheduler_box: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_scheduler:
            from cds.scheduling import start_scheduler

            scheduler_box["s"] = start_scheduler(settings, state, holder)
        try:
            yield
        finally:
            if "s" in scheduler_box:
                scheduler_box["s"].shutdown(wait=False)
            if store is None:
                state.close()

    app.router.lifespan_context = lifespan

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        runs = await asyncio.to_thread(state.runs, 1)
        last = runs[0] if runs else None
        return {
            "status": "ok",
            "last_sync": None if last is None else {
                "id": last.id, "status": last.status, "started_at": last.started_at.isoformat(),
                "ended_at": last.ended_at.isoformat() if last.ended_at else None, "counts": last.counts,
            },
        }

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        try:
            await asyncio.to_thread(state.get_watermark, "DocumentReference")
        except Exception as exc:  # the database is the one dependency the service cannot answer without
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    app.state.parts = ServiceParts(state, decisions)
    return app
