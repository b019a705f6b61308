"""Fixtures for the hooks tests: a fake decision service and the hooks app on a real port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ehr import MiniEhr, serve
from fakes import TENANT_ISS, FakeDecisions

from hooks import (
    HooksConfig,
    InMemoryReplayStore,
    IssuerTrust,
    JwtConfig,
    JwtVerifier,
    create_hooks_app,
    default_services,
)


@pytest.fixture(scope="session")
def ehr() -> MiniEhr:
    return MiniEhr()


@pytest.fixture(scope="session")
def tenanted_ehr() -> MiniEhr:
    return MiniEhr(iss=TENANT_ISS)


@pytest.fixture(scope="session")
def fake() -> FakeDecisions:
    return FakeDecisions()


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeDecisions) -> Iterator[None]:
    yield
    fake.reset()


@pytest.fixture(scope="session")
def hooks_config() -> HooksConfig:
    return HooksConfig(
        environment="test",
        max_body_bytes=64 * 1024,
        decision_timeout_s=0.5,
        timeout_grace_s=0.1,
        cors_allow_origins=("http://sandbox.local:8080",),
    )


@pytest.fixture(scope="session")
def live(ehr: MiniEhr, tenanted_ehr: MiniEhr, fake: FakeDecisions, hooks_config: HooksConfig) -> Iterator[str]:
    """Base URL of the hooks app (JWT on, two trusted issuers) served by uvicorn on a free port."""
    config = JwtConfig(
        trusted_issuers={
            ehr.iss: ehr.issuer_trust(allowed_jku=("https://ehr.example.org/jwks.json",)),
            tenanted_ehr.iss: IssuerTrust(jwks=tenanted_ehr.jwks(), tenants=("tenant-a",)),
        }
    )
    verifier = JwtVerifier(config, InMemoryReplayStore())
    with serve(create_hooks_app(default_services(), fake, verifier, hooks_config)) as base:
        yield base


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c
