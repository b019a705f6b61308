"""Faults a real server cannot be made to produce on demand, injected around the real sandbox transport.

No duplicate, no loss, and a clear error where giving up is right.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from adapters_testkit import FaultyTransport, Rule, note, patient

from adapters import (
    AdverseEventInput,
    FhirClient,
    FhirClientConfig,
    FhirServerError,
    FhirTransportError,
    PullStats,
    load_resources,
    pull_notes,
    write_adverse_events,
)

pytestmark = pytest.mark.sandbox


class NoSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@asynccontextmanager
async def faulty(config: FhirClientConfig, rule: Rule) -> AsyncIterator[tuple[FhirClient, FaultyTransport, NoSleep]]:
    transport = FaultyTransport(rule)
    sleeps = NoSleep()
    async with FhirClient(config, transport=transport, sleep=sleeps) as client:
        yield client, transport, sleeps


def is_transaction(request: httpx.Request) -> bool:
    return request.method == "POST" and request.url.path.rstrip("/").endswith("/fhir")


async def seed_notes(fhir: FhirClient, run_id: str, count: int) -> tuple[str, set[str]]:
    pid = f"{run_id}-pat"
    notes = [note(f"{run_id}-n{i:02d}", pid, f"Note {i}: fatigue grade 1.") for i in range(count)]
    await load_resources(fhir, [patient(pid), *notes])
    return pid, {n["id"] for n in notes}


async def test_transaction_dropped_after_commit_is_replayed_without_duplicates(
    fhir: FhirClient, sandbox_config: FhirClientConfig, run_id: str
) -> None:
    pid = f"{run_id}-pat"
    await load_resources(fhir, [patient(pid), note(f"{run_id}-note", pid, "Rash after cetuximab.")])
    finding = AdverseEventInput(
        finding_key=f"{run_id}|rash",
        patient_id=pid,
        note_id=f"{run_id}-note",
        drug_rxnorm="318341",
        drug_display="cetuximab 2 MG/ML Injectable Solution",
        medication_request_id=None,
        ctcae_term="Rash acneiform",
        meddra_code="10037847",
        grade=2,
        date=datetime(2024, 3, 1, tzinfo=UTC),
        evidence_text="acneiform rash on face",
        model_name=f"ade-{run_id}",
        model_version="1",
    )
    before = {t: await fhir.count(t) for t in ("AdverseEvent", "Provenance", "Device")}

    def drop_first_transaction(request: httpx.Request, n: int) -> str | None:
        return "drop-after" if is_transaction(request) and n == 1 else None

    async with faulty(sandbox_config, drop_first_transaction) as (client, transport, _):
        report = await write_adverse_events(client, [finding])
    assert transport.injected == ["drop-after"]
    assert sum(is_transaction(r) for r in transport.requests) == 2  # the server saw it twice
    assert report.failures == [] and report.total_created == 0  # the replay found the first run's writes
    after = {t: await fhir.count(t) for t in before}
    assert {t: after[t] - before[t] for t in before} == {"AdverseEvent": 1, "Provenance": 1, "Device": 1}


async def test_bulk_load_dropped_mid_way_is_replayed_without_duplicates(
    fhir: FhirClient, sandbox_config: FhirClientConfig, run_id: str
) -> None:
    pid = f"{run_id}-pat"
    resources = [patient(pid)] + [note(f"{run_id}-n{i}", pid, f"note {i}") for i in range(6)]
    before = await fhir.count("DocumentReference")

    def drop_second(request: httpx.Request, n: int) -> str | None:
        return "drop-after" if n == 2 else None

    async with faulty(sandbox_config, drop_second) as (client, transport, _):
        report = await load_resources(client, resources, batch_size=3)
    assert transport.injected == ["drop-after"]
    assert report.sent == 7
    assert await fhir.count("DocumentReference") == before + 6


async def test_a_plain_create_dropped_after_commit_is_not_replayed(
    fhir: FhirClient, sandbox_config: FhirClientConfig, run_id: str
) -> None:
    marker = f"{run_id}-plain"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": marker}]},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }

    async with faulty(sandbox_config, lambda r, n: "drop-after") as (client, transport, _):
        with pytest.raises(FhirTransportError) as caught:
            await client.transaction(bundle)
    assert caught.value.code == "OV-1022" and "unknown" in str(caught.value)
    assert len(transport.requests) == 1
    # The server did apply it once; replaying would have made two.
    assert await fhir.count("Patient", {"identifier": f"urn:test|{marker}"}) == 1


async def test_500_on_a_page_stops_the_pull_and_a_rerun_gets_everything_once(
    fhir: FhirClient, sandbox_config: FhirClientConfig, run_id: str
) -> None:
    pid, expected = await seed_notes(fhir, run_id, 35)
    scope = [("patient", f"Patient/{pid}")]

    def fail_third_page(request: httpx.Request, n: int) -> str | None:
        return "500" if "_getpages" in str(request.url) and n == 3 else None

    got: list[str] = []
    stats = PullStats()
    async with faulty(sandbox_config, fail_third_page) as (client, transport, _):
        with pytest.raises(FhirServerError) as caught:
            async for item in pull_notes(client, None, stats=stats, params=scope):
                got.append(item.id)
    assert transport.injected == ["500"]
    assert "injected 500" in str(caught.value) and caught.value.code == "OV-1032"
    assert len(got) == 20 and len(set(got)) == 20 and set(got) <= expected  # two pages, nothing twice
    # The caller keeps its old watermark (None) because the pull did not finish; the rerun loses nothing.
    rerun = [n.id async for n in pull_notes(fhir, None, params=scope)]
    assert sorted(rerun) == sorted(expected)


async def test_503_and_timeouts_during_a_pull_are_ridden_out(
    fhir: FhirClient, sandbox_config: FhirClientConfig, run_id: str
) -> None:
    pid, expected = await seed_notes(fhir, run_id, 25)
    scope = [("patient", f"Patient/{pid}")]

    def flaky(request: httpx.Request, n: int) -> str | None:
        return {1: "503", 3: "timeout", 5: "503"}.get(n)

    async with faulty(sandbox_config, flaky) as (client, transport, sleeps):
        got = [n.id async for n in pull_notes(client, None, params=scope)]
    assert sorted(got) == sorted(expected)
    assert transport.injected == ["503", "timeout", "503"]
    assert sleeps.delays[0] == 1.0 and sleeps.delays[2] == 1.0  # Retry-After honoured
