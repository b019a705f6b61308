"""Fixtures for the adapters tests: a sandbox URL, per-test unique ids, a FHIR client on the sandbox."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from adapters import FhirClient, FhirClientConfig

if not (Path(__file__).resolve().parent.parent / "conftest.py").exists():
    # Until the project-wide conftest (which starts one sandbox per session) exists, use a running server.
    @pytest.fixture(scope="session")
    def fhir_base_url() -> str:
        url = os.environ.get("ONCOVIGIL_TEST_FHIR_URL")
        if not url:
            pytest.skip("no FHIR sandbox: set ONCOVIGIL_TEST_FHIR_URL to a running HAPI sandbox")
        return url


@pytest.fixture
def run_id() -> str:
    """A prefix that makes every id and identifier of one test unique on a shared sandbox."""
    return f"ovt-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sandbox_config(fhir_base_url: str) -> FhirClientConfig:
    return FhirClientConfig(base_url=fhir_base_url, page_size=10, read_timeout_s=60.0, max_retries=2)


@pytest_asyncio.fixture(loop_scope="function")
async def fhir(sandbox_config: FhirClientConfig) -> AsyncIterator[FhirClient]:
    async with FhirClient(sandbox_config) as client:
        yield client
