"""Test kit for the adapters tests: a real tiny HTTP server, seed resources, a fault-injecting transport."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], state: object = None) -> Iterator[str]:
    """Serve ``handler`` on a free port; yields the base URL. ``state`` is reachable as ``self.server.state``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- seed data and fault injection for the sandbox tests -------------------------------------------


RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode("ascii")


def patient(pid: str, birth: str = "1958-03-04", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth}


def note(
    nid: str,
    pid: str,
    text: str,
    *,
    status: str = "current",
    content_type: str = "text/plain; charset=utf-8",
    encoding: str = "utf-8",
    date: str = "2024-03-01T10:00:00Z",
    url: str | None = None,
    doc_status: str | None = None,
) -> dict[str, Any]:
    attachment: dict[str, Any] = {"contentType": content_type}
    if url:
        attachment["url"] = url
    else:
        attachment["data"] = b64(text, encoding)
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": nid,
        "status": status,
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "date": date,
        "content": [{"attachment": attachment}],
    }
    if doc_status:
        resource["docStatus"] = doc_status
    return resource


def order(
    oid: str,
    pid: str,
    code: str,
    display: str,
    *,
    status: str = "active",
    authored: str = "2024-02-01",
    medication_id: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": oid,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": authored,
    }
    if medication_id:
        resource["medicationReference"] = {"reference": f"Medication/{medication_id}"}
    else:
        resource["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": code, "display": display}]}
    return resource


def medication(mid: str, code: str, display: str, ingredient: str) -> dict[str, Any]:
    return {
        "resourceType": "Medication",
        "id": mid,
        "code": {"coding": [{"system": RXNORM, "code": code, "display": display}]},
        "ingredient": [{"itemCodeableConcept": {"text": ingredient}}],
    }


Rule = Callable[[httpx.Request, int], str | None]


class FaultyTransport(httpx.AsyncBaseTransport):
    """Wraps a real transport to the sandbox and injects what a real server cannot be made to do.

    ``rule(request, n)`` returns None (pass through), "drop-after" (forward, let the server commit, then
    lose the answer), "500", "503", or "timeout" (the request never reaches the server).
    """

    def __init__(self, rule: Rule) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._rule = rule
        self.requests: list[httpx.Request] = []
        self.injected: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        action = self._rule(request, len(self.requests))
        if action:
            self.injected.append(action)
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "exception", "diagnostics": f"injected {action}"}],
        }
        if action == "500":
            return httpx.Response(500, json=outcome, headers={"Content-Type": "application/fhir+json"})
        if action == "503":
            return httpx.Response(
                503, json=outcome, headers={"Content-Type": "application/fhir+json", "Retry-After": "1"}
            )
        if action == "timeout":
            raise httpx.ReadTimeout("injected read timeout", request=request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._inner.handle_async_request(request)
            if action == "drop-after":
                await response.aread()
                await response.aclose()
                raise httpx.RemoteProtocolError("injected: connection dropped before the answer", request=request)
            return response
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self._inner.aclose()
