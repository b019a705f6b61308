"""Fixtures for the hooks tests: a fake decision service and the hooks app on a real port."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ehr import MiniEhr, serve  # noqa: E402

from hooks import (  # noqa: E402
    AlternativeOrder,
    CdsResponse,
    FeedbackItem,
    HookCall,
    HooksConfig,
    InMemoryReplayStore,
    IssuerTrust,
    JwtConfig,
    JwtVerifier,
    PrefetchUnavailable,
    PriorEvent,
    create_hooks_app,
    default_services,
    overprescription_card,
    prior_ade_card,
)

TENANT_ISS = "https://tenanted.example.org"


def draft_ids(call: HookCall) -> list[str]:
    bundle = getattr(call.context, "draftOrders", {}) or {}
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("resource", {}).get("id")]


async def default_decide(call: HookCall) -> CdsResponse:
    """Deterministic cards from the request alone; 412 when the patient is neither prefetched nor fetchable."""
    if "patient" in call.missing_prefetch() and call.fhir_server is None:
        raise PrefetchUnavailable(["patient"])
    cards = []
    if call.hook == "order-select":
        ids = [s.split("/", 1)[1] for s in call.context.selections]  # type: ignore[union-attr]
    else:
        ids = draft_ids(call)
    for order_id in ids[:2]:
        cards.append(
            overprescription_card(
                f"Drug {order_id}",
                order_id,
                ["dose above usual range"],
                0.9,
                AlternativeOrder("Alternative", {"resourceType": "MedicationRequest", "status": "draft"}),
                hook_instance=call.hook_instance,
            )
        )
    if call.hook == "patient-view":
        cards.append(
            prior_ade_card("Paclitaxel", [PriorEvent("neuropathy", 3, "2026-10-01", "DocumentReference/n1")],
                           hook_instance=call.hook_instance)
        )
    return CdsResponse(cards=cards)


@dataclass
class FakeDecisions:
    """Records calls and feedback; ``behaviour`` can be swapped per test (reset after each)."""

    calls: list[HookCall] = field(default_factory=list)
    feedback: list[tuple[str, list[FeedbackItem]]] = field(default_factory=list)
    behaviour: Callable[[HookCall], Awaitable[object]] = default_decide
    feedback_error: Exception | None = None

    async def decide(self, call: HookCall) -> CdsResponse:
        self.calls.append(call)
        return await self.behaviour(call)  # type: ignore[return-value]

    async def record_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> None:
        if self.feedback_error is not None:
            raise self.feedback_error
        self.feedback.append((service_id, list(items)))

    def reset(self) -> None:
        self.calls.clear()
        self.feedback.clear()
        self.behaviour = default_decide
        self.feedback_error = None


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
