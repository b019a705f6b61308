"""Project-wide fixtures: one live HAPI FHIR sandbox per test session, and a small seeded cohort on it.

``ONCOVIGIL_TEST_FHIR_URL`` points the tests at a server that is already running (nothing is started
or stopped then). Otherwise the sandbox jar is built if stale and started on a free port with an
in-memory database. When that is impossible the sandbox tests are skipped with the reason, except
in CI (``CI`` set) or with ``ONCOVIGIL_REQUIRE_SANDBOX=1``, where they fail: a broken sandbox must
never hide behind a skip.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from cds.errors import SandboxError
from cds.sandbox import SandboxManager, free_port

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SEED_PATIENTS = 8
SEED_SEED = 11
SYNTHEA_PATIENTS = 3


@dataclass(frozen=True)
class SessionSandbox:
    """The sandbox this session started; ``home`` is an OncoVigil home whose ``sandbox/`` is its state."""

    manager: SandboxManager
    home: Path
    startup_s: float


@dataclass(frozen=True)
class SeededSandbox:
    base_url: str
    truth_dir: Path
    counts: Mapping[str, int]  # resources per type on the server after seeding
    created: int  # resources the seeding created (0 when the server already held them)
    synthea_loaded: bool


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that touches the live server carries the ``sandbox`` marker (``-m "not sandbox"``)."""
    for item in items:
        if {"fhir_base_url", "seeded_sandbox", "session_sandbox"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sandbox)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") or os.environ.get("ONCOVIGIL_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"{reason} (sandbox required: CI or ONCOVIGIL_REQUIRE_SANDBOX=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def prerequisite() -> Callable[[bool, str], None]:
    """``prerequisite(ok, reason)``: skip locally, fail in CI (same rule as the sandbox itself)."""

    def check(ok: bool, reason: str) -> None:
        if not ok:
            _unavailable(reason)

    return check


@pytest.fixture(scope="session")
def session_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionSandbox | None]:
    """Starts one sandbox for the session (None when ONCOVIGIL_TEST_FHIR_URL names an external one)."""
    if os.environ.get("ONCOVIGIL_TEST_FHIR_URL"):
        yield None
        return
    home = tmp_path_factory.mktemp("oncovigil-home")
    manager = SandboxManager(
        sandbox_dir=REPO / "docker" / "hapi",
        state_dir=home / "sandbox",
        port=free_port(),
        heap_mb=int(os.environ.get("ONCOVIGIL_SANDBOX_HEAP_MB", "1536")),
        start_timeout_s=float(os.environ.get("ONCOVIGIL_SANDBOX_START_TIMEOUT_S", "600")),
        database="memory",
    )
    try:
        manager.build()
        seconds = manager.start()
    except SandboxError as exc:
        _unavailable(f"HAPI sandbox unavailable: {exc}")
    yield SessionSandbox(manager, home, seconds)
    stopped = manager.stop()
    assert stopped, "the session sandbox was no longer running at the end of the session"
    assert not manager.status().running


@pytest.fixture(scope="session")
def fhir_base_url(session_sandbox: SessionSandbox | None) -> str:
    """Base URL of the live FHIR server, like ``http://127.0.0.1:PORT/fhir``."""
    if session_sandbox is None:
        return os.environ["ONCOVIGIL_TEST_FHIR_URL"].rstrip("/")
    return session_sandbox.manager.url


@pytest.fixture(scope="session")
def seeded_sandbox(fhir_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> SeededSandbox:
    """The sandbox with a small cohort (8 patients, seed 11) and, if ../shared exists, 3 Synthea patients."""
    from adapters import FhirClient, FhirClientConfig
    from cds.cohort import generate_cohort
    from cds.seed import seed_all

    truth_dir = tmp_path_factory.mktemp("cohort-truth")
    cohort = generate_cohort(SEED_PATIENTS, SEED_SEED)

    async def seed() -> SeededSandbox:
        config = FhirClientConfig(base_url=fhir_base_url, read_timeout_s=180.0, max_retries=2)
        async with FhirClient(config) as client:
            report = await seed_all(
                client,
                cohort,
                truth_dir,
                data_dir=SHARED_DATA if SHARED_DATA.is_dir() else None,
                synthea_patients=SYNTHEA_PATIENTS,
            )
        return SeededSandbox(fhir_base_url, truth_dir, report.server_counts, report.created, report.synthea is not None)

    return asyncio.run(seed())
