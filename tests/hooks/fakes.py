"""A fake decision service for the hooks tests (hooks is tested alone, DESIGN.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from hooks import (
    AlternativeOrder,
    Card,
    CdsResponse,
    FeedbackItem,
    HookCall,
    PrefetchUnavailable,
    PriorEvent,
    Source,
    overprescription_card,
    prior_ade_card,
)

TENANT_ISS = "https://tenanted.example.org"


def draft_ids(call: HookCall) -> list[str]:
    bundle = getattr(call.context, "draftOrders", {}) or {}
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("resource", {}).get("id")]


async def default_decide(call: HookCall) -> CdsResponse:
    """Deterministic cards from the request alone; 412 when the patient is not prefetched nor fetchable."""
    if "patient" in call.missing_prefetch() and call.fhir_server is None:
        raise PrefetchUnavailable(["patient"])
    cards = []
    selections = getattr(call.context, "selections", None)
    ids = [s.split("/", 1)[1] for s in selections] if selections else draft_ids(call)
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
            prior_ade_card(
                "Paclitaxel",
                [PriorEvent("neuropathy", 3, "2026-10-01", "DocumentReference/n1")],
                hook_instance=call.hook_instance,
            )
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


class ConstantDecisions:
    """Answers one valid card to every call; never inspects FHIR (its robustness is not under test)."""

    async def decide(self, call: HookCall) -> CdsResponse:
        return CdsResponse(cards=[Card(summary="ok", indicator="info", source=Source(label="OncoVigil"))])

    async def record_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> None:
        return None
