"""The decision service ``hooks`` needs, declared as a Protocol that ``cds`` implements.

``hooks`` parses and checks the call, then hands a :class:`HookCall` to :meth:`DecisionService.decide`.
The decision service may raise :class:`hooks.errors.PrefetchUnavailable` (answered 412 with an
OperationOutcome) or :class:`hooks.errors.BadHookRequest` (400); anything else it raises is answered 500
with code OV-3099.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hooks.cards import CdsResponse
from hooks.jwt import VerifiedClient
from hooks.requests import FeedbackItem, FhirAuthorization, HookContext, HookName
from hooks.services import ServiceDefinition, expand_template


@dataclass(frozen=True, slots=True)
class HookCall:
    """One verified, parsed hook call.

    ``prefetch`` is raw FHIR JSON as the EHR sent it: an absent key was not fetched, a key with ``None``
    means "nothing there" (a read that found no resource), a value may also be an OperationOutcome (the EHR
    tried and failed) or a paginated Bundle. ``deadline`` is a ``time.monotonic()`` value: answer before it.
    ``fhir_authorization.access_token`` is a SecretStr; pass ``.get_secret_value()`` only to the FHIR client.
    """

    service: ServiceDefinition
    hook: HookName
    hook_instance: str
    context: HookContext
    prefetch: Mapping[str, dict[str, Any] | None]
    fhir_server: str | None
    fhir_authorization: FhirAuthorization | None
    deadline: float
    client: VerifiedClient | None = None

    @property
    def service_id(self) -> str:
        return self.service.id

    def time_left_s(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.deadline - time.monotonic()

    def missing_prefetch(self) -> list[str]:
        """Keys of the service's prefetch templates the EHR did not send (``None`` counts as sent)."""
        return [key for key in self.service.prefetch if key not in self.prefetch]

    def prefetch_query(self, key: str) -> str | None:
        """The FHIR query (relative to ``fhir_server``) for a prefetch key in this call; None if unknown or a
        token has no value here (e.g. ``{{context.encounterId}}`` without an encounter)."""
        template = self.service.prefetch.get(key)
        return None if template is None else expand_template(template, self.context)


class DecisionService(Protocol):
    """What ``cds`` provides to answer hook calls and store feedback."""

    async def decide(self, call: HookCall) -> CdsResponse:
        """Cards (and system actions) for this call; ``CdsResponse(cards=[])`` when there is no advice."""
        ...

    async def record_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> None:
        """Store what clinicians did with our cards (accepted suggestions, override reasons)."""
        ...
