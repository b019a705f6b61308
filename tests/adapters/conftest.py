"""Fixtures for the adapters tests: per-test unique ids and a FHIR client on the session sandbox.

``fhir_base_url`` comes from the project-wide ``tests/conftest.py`` (one sandbox per test session).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters import FhirClient, FhirClientConfig


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
