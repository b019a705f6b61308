"""Fault injection on the client: what a real server cannot be made to do on demand (httpx.MockTransport),
plus real timeouts against a slow local server."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from adapters_testkit import serve

from adapters import (
    FhirClient,
    FhirClientConfig,
    FhirProtocolError,
    FhirRequestError,
    FhirServerError,
    FhirThrottledError,
    FhirTransportError,
)

BASE = "http://fhir.test/fhir"
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-0960: numeric id not allowed"}],
}


class Sleeps:
    """Records the delays the client asked for instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def client(handler: Callable[[httpx.Request], httpx.Response], sleeps: Sleeps, **config: Any) -> FhirClient:
    settings = {"base_url": BASE, "max_retries": 3, "backoff_base_s": 0.5, "backoff_max_s": 4.0, **config}
    return FhirClient(
        FhirClientConfig(**settings), transport=httpx.MockTransport(handler), sleep=sleeps, rng=random.Random(7)
    )


def fhir_json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"Content-Type": "application/fhir+json", **(headers or {})})


PATIENT = {"resourceType": "Patient", "id": "p1"}


async def test_503_with_retry_after_is_honoured_then_succeeds() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return fhir_json(OUTCOME, 503, {"Retry-After": "2"})
        return fhir_json(PATIENT)

    sleeps = Sleeps()
    async with client(handler, sleeps) as fhir:
        assert (await fhir.read("Patient", "p1"))["id"] == "p1"
    assert len(calls) == 2
    assert sleeps.delays == [2.0]


async def test_retry_after_beyond_our_limit_gives_up_at_once() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return fhir_json(OUTCOME, 429, {"Retry-After": "3600"})

    sleeps = Sleeps()
    async with client(handler, sleeps, max_retry_after_s=60) as fhir:
        with pytest.raises(FhirThrottledError) as caught:
            await fhir.read("Patient", "p1")
    assert len(calls) == 1 and sleeps.delays == []
    assert caught.value.code == "OV-1033" and "3600 s" in str(caught.value)


async def test_backoff_grows_with_jitter_and_stops_after_max_retries() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return fhir_json(OUTCOME, 502)

    sleeps = Sleeps()
    async with client(handler, sleeps) as fhir:
        with pytest.raises(FhirServerError) as caught:
            await fhir.read("Patient", "p1")
    assert len(calls) == 4  # 1 + max_retries
    assert len(sleeps.delays) == 3
    for attempt, delay in enumerate(sleeps.delays):
        assert 0.0 <= delay <= min(4.0, 0.5 * 2**attempt)
    assert len(set(sleeps.delays)) == 3  # jittered, not a fixed schedule
    assert "after 4 attempts" in str(caught.value)


async def test_4xx_is_not_retried_and_keeps_the_operation_outcome() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return fhir_json(OUTCOME, 400)

    sleeps = Sleeps()
    async with client(handler, sleeps) as fhir:
        with pytest.raises(FhirRequestError) as caught:
            await fhir.update({"resourceType": "Patient", "id": "123"})
    assert len(calls) == 1
    assert caught.value.status == 400 and caught.value.code == "OV-1030"
    assert "HAPI-0960: numeric id not allowed" in str(caught.value)
    assert caught.value.issues[0].diagnostics.startswith("HAPI-0960")


async def test_500_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return fhir_json(OUTCOME, 500)

    async with client(handler, Sleeps()) as fhir:
        with pytest.raises(FhirServerError) as caught:
            await fhir.read("Patient", "p1")
    assert len(calls) == 1 and caught.value.code == "OV-1032"


PLAIN_POST = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}}],
}
GUARDED_POST = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{"resource": PATIENT, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|b"}}],
}
RESPONSE = {
    "resourceType": "Bundle",
    "type": "transaction-response",
    "entry": [{"response": {"status": "201 Created"}}],
}


async def test_dropped_connection_on_a_non_idempotent_write_is_not_replayed() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadError("connection reset by peer", request=request)

    async with client(handler, Sleeps()) as fhir:
        with pytest.raises(FhirTransportError) as caught:
            await fhir.transaction(PLAIN_POST)
    assert len(calls) == 1
    assert caught.value.code == "OV-1022" and "unknown" in str(caught.value)


async def test_dropped_connection_on_a_conditional_write_is_replayed() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("peer closed connection without response", request=request)
        return fhir_json(RESPONSE)

    async with client(handler, Sleeps()) as fhir:
        answer = await fhir.transaction(GUARDED_POST)
    assert answer["type"] == "transaction-response" and len(calls) == 2
    assert json.loads(calls[0].content) == json.loads(calls[1].content) == GUARDED_POST


async def test_connect_errors_are_retried_even_for_plain_posts_but_502_is_not() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return fhir_json(OUTCOME, 502)

    async with client(handler, Sleeps()) as fhir:
        with pytest.raises(FhirServerError):
            await fhir.transaction(PLAIN_POST)
    assert len(calls) == 2  # the refused connect was retried; the 502 on a plain POST was not


async def test_429_is_retried_for_any_write() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return fhir_json(OUTCOME, 429, {"Retry-After": "1"}) if len(calls) == 1 else fhir_json(RESPONSE)

    sleeps = Sleeps()
    async with client(handler, sleeps) as fhir:
        await fhir.transaction(PLAIN_POST)
    assert len(calls) == 2 and sleeps.delays == [1.0]


async def test_unreachable_server_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client(handler, Sleeps(), max_retries=1) as fhir:
        with pytest.raises(FhirTransportError) as caught:
            await fhir.capabilities()
    assert caught.value.code == "OV-1020" and "after 2 attempts" in str(caught.value)


def page(n: int, next_url: str | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": f"p{n}-{i}"}, "search": {"mode": "match"}} for i in range(2)
        ],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


async def test_search_follows_next_verbatim_and_a_500_midway_loses_and_duplicates_nothing() -> None:
    # An odd but valid next link: the client must send it back exactly, never rebuild it.
    link2 = f"{BASE}?_getpages=abc%2Fdef&_getpagesoffset=2&_count=2&_bundletype=searchset&z=%7C"
    link3 = f"{BASE}?_getpages=abc%2Fdef&_getpagesoffset=4&_count=2&_bundletype=searchset&z=%7C"
    seen: list[httpx.Request] = []
    fail_page3 = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        url = str(request.url)
        if url == link3 and fail_page3[0]:
            return fhir_json(OUTCOME, 500)
        if url == link2:
            return fhir_json(page(2, link3))
        if url == link3:
            return fhir_json(page(3, None))
        return fhir_json(page(1, link2))

    got: list[str] = []
    async with client(handler, Sleeps(), page_size=2) as fhir:
        with pytest.raises(FhirServerError) as caught:
            async for patient in fhir.search("Patient", {"name": "x"}):
                got.append(patient["id"])
        assert got == ["p1-0", "p1-1", "p2-0", "p2-1"]
        assert caught.value.status == 500 and "HAPI-0960" in str(caught.value)
        first = seen[0]
        assert first.url.params["_count"] == "2" and first.url.params["name"] == "x"
        assert first.headers["Cache-Control"] == "no-cache"
        assert "Cache-Control" not in seen[1].headers
        assert [str(r.url) for r in seen[1:]] == [link2, link3]

        fail_page3[0] = False  # the next run starts again and gets everything exactly once
        again = [p["id"] async for p in fhir.search("Patient", {"name": "x"})]
    assert again == ["p1-0", "p1-1", "p2-0", "p2-1", "p3-0", "p3-1"]


async def test_next_link_to_another_origin_or_a_loop_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "evil.test":
            raise AssertionError("credentials must never go to another origin")
        return fhir_json(page(1, "http://evil.test/fhir?_getpages=x"))

    async with client(handler, Sleeps()) as fhir:
        with pytest.raises(FhirProtocolError) as caught:
            _ = [p async for p in fhir.search("Patient")]
    assert caught.value.code == "OV-1052"

    def looping(request: httpx.Request) -> httpx.Response:
        return fhir_json(page(1, f"{BASE}?_getpages=same"))

    async with client(looping, Sleeps()) as fhir:
        with pytest.raises(FhirProtocolError) as loop:
            _ = [p async for p in fhir.search("Patient")]
    assert loop.value.code == "OV-1056"


async def test_html_error_page_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>", headers={"Content-Type": "text/html"})

    async with client(handler, Sleeps()) as fhir:
        with pytest.raises(FhirProtocolError) as caught:
            await fhir.capabilities()
    assert caught.value.code == "OV-1050" and "text/html" in str(caught.value)


class SlowHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.state.append(time.monotonic())  # type: ignore[attr-defined]
        time.sleep(1.0)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            self.wfile.write(json.dumps(PATIENT).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass


async def test_read_timeout_on_a_real_slow_server_is_retried_then_reported() -> None:
    hits: list[float] = []
    with serve(SlowHandler, hits) as base:
        config = FhirClientConfig(f"{base}/fhir", read_timeout_s=0.2, max_retries=1, backoff_base_s=0.01)
        async with FhirClient(config) as fhir:
            started = time.monotonic()
            with pytest.raises(FhirTransportError) as caught:
                await fhir.read("Patient", "p1")
            elapsed = time.monotonic() - started
    assert caught.value.code == "OV-1021" and "timed out after 2 attempts" in str(caught.value)
    assert len(hits) == 2
    assert elapsed < 1.5  # two 0.2 s timeouts, not the server's full second each


async def test_writer_replays_a_409_once_then_reports() -> None:
    from adapters import write_detected_issues
    from adapters.records import DetectedIssueInput

    issue = DetectedIssueInput(
        key="k1",
        patient_id="p1",
        medication_request_id="mr1",
        drug_rxnorm="583214",
        drug_display="PACLitaxel",
        severity="low",
        detail="d",
        identified=datetime(2024, 1, 1, tzinfo=UTC),
        model_name="m",
        model_version="1",
    )
    conflict = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "conflict", "diagnostics": "HAPI-0550: version conflict"}],
    }
    answers = [
        fhir_json(conflict, 409),
        fhir_json(
            {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [
                    {"response": {"status": "200 OK", "location": "Device/d1/_history/1"}},
                    {"response": {"status": "201 Created", "location": "DetectedIssue/i1/_history/1"}},
                    {"response": {"status": "201 Created", "location": "Provenance/v1/_history/1"}},
                ],
            }
        ),
    ]
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answers[min(len(calls) - 1, 1)]

    async with client(handler, Sleeps()) as fhir:
        report = await write_detected_issues(fhir, [issue])
    assert len(calls) == 2 and report.failures == []
    assert report.references == {"k1": "DetectedIssue/i1"}
    assert report.created == {"DetectedIssue": 1, "Provenance": 1} and report.existing == {"Device": 1}

    answers[1] = fhir_json(conflict, 409)
    calls.clear()
    async with client(handler, Sleeps()) as fhir:
        again = await write_detected_issues(fhir, [issue])
    assert len(calls) == 2
    [failure] = again.failures
    assert failure.status == 409 and "HAPI-0550" in failure.diagnostics
