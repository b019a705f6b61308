"""CDS service definitions (what discovery advertises) and prefetch templates.

Prefetch templates may only use the tokens the spec defines for root primitive context fields and the user
(``{{context.draftOrders...}}`` is invalid: it names a Bundle, not a primitive). A definition with any other
token is refused when it is built, so discovery never advertises a template an EHR cannot fill.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Self

from pydantic import Field, field_validator, model_validator

from hooks.requests import HookContext, HookName
from hooks.wire import WireModel

SERVICE_ID = r"^[A-Za-z0-9._~\-]{1,100}$"
PREFETCH_KEY = r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$"

_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
CONTEXT_TOKENS = frozenset({"context.patientId", "context.encounterId", "context.userId"})
USER_TOKENS: Mapping[str, str] = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
ALLOWED_TOKENS = CONTEXT_TOKENS | frozenset(USER_TOKENS)


def template_tokens(template: str) -> list[str]:
    """The ``{{...}}`` tokens of a prefetch template, whitespace-trimmed."""
    return [m.group(1) for m in _TOKEN.finditer(template)]


def check_template(template: str) -> None:
    """Raise ``ValueError`` naming the first token the spec does not allow in a prefetch template."""
    if template.count("{{") != template.count("}}"):
        raise ValueError(f"prefetch template {template!r} has unbalanced '{{{{' / '}}}}'")
    for token in template_tokens(template):
        if token not in ALLOWED_TOKENS:
            raise ValueError(
                f"prefetch token {{{{{token}}}}} is not allowed; use one of "
                + ", ".join(f"{{{{{t}}}}}" for t in sorted(ALLOWED_TOKENS))
            )


def expand_template(template: str, context: HookContext) -> str | None:
    """The FHIR query a template stands for in this call, or None when a token has no value here.

    The decision service uses it to fetch from ``fhirServer`` what the EHR did not prefetch.
    """
    values: dict[str, str | None] = {
        "context.patientId": context.patientId,
        "context.encounterId": context.encounterId,
        "context.userId": context.userId,
    }
    user_type, _, user_id = context.userId.partition("/")
    for token, resource_type in USER_TOKENS.items():
        values[token] = user_id if user_type == resource_type else None

    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(match.group(1))
        if value is None:
            missing = True
            return ""
        return value

    expanded = _TOKEN.sub(substitute, template)
    return None if missing else expanded


class ServiceDefinition(WireModel):
    """One CDS service as advertised by discovery; the service URL is ``{base}/cds-services/{id}``."""

    hook: HookName
    id: str = Field(pattern=SERVICE_ID)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=2000)
    prefetch: dict[str, str] = Field(default_factory=dict)
    usageRequirements: str | None = Field(default=None, min_length=1, max_length=2000)

    @field_validator("prefetch")
    @classmethod
    def _valid_templates(cls, prefetch: dict[str, str]) -> dict[str, str]:
        for key, template in prefetch.items():
            if not re.match(PREFETCH_KEY, key):
                raise ValueError(f"prefetch key {key!r} must match {PREFETCH_KEY}")
            if not template.strip():
                raise ValueError(f"prefetch template for {key!r} is empty")
            check_template(template)
        return prefetch


class DiscoveryResponse(WireModel):
    """``GET /cds-services``: the list may be empty but is always present."""

    services: list[ServiceDefinition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        ids = [s.id for s in self.services]
        if len(ids) != len(set(ids)):
            raise ValueError("service ids must be unique (each id is one URL)")
        return self

    def to_wire(self) -> dict[str, object]:
        data = super().to_wire()
        data.setdefault("services", [])
        return data


DEFAULT_PREFETCH: Mapping[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
    "adverseEvents": "AdverseEvent?subject=Patient/{{context.patientId}}",
}

_USAGE = (
    "Calls must carry the EHR's JWT (ES384 or RS384, aud = the service URL) from an issuer configured in "
    "OncoVigil. Send the prefetch keys listed, or a fhirServer with a fhirAuthorization that can read them; "
    "otherwise the service answers 412."
)


def default_services() -> list[ServiceDefinition]:
    """OncoVigil's three services: early advice on selection, final check on signing, chart-open summary."""
    prefetch = dict(DEFAULT_PREFETCH)
    return [
        ServiceDefinition(
            hook="order-select",
            id="oncovigil-order-select",
            title="OncoVigil prescribing advice",
            description=(
                "Flags likely overprescription of the selected medication orders and prior adverse drug "
                "events recorded for those drugs."
            ),
            prefetch=prefetch,
            usageRequirements=_USAGE,
        ),
        ServiceDefinition(
            hook="order-sign",
            id="oncovigil-order-sign",
            title="OncoVigil signing check",
            description=(
                "Final check of the orders being signed: likely overprescription, with a suggestion to "
                "remove or replace the order, and prior adverse drug events for the same drugs."
            ),
            prefetch=prefetch,
            usageRequirements=_USAGE,
        ),
        ServiceDefinition(
            hook="patient-view",
            id="oncovigil-patient-view",
            title="OncoVigil adverse event summary",
            description=(
                "Summarises adverse drug events found in the patient's notes by the nightly "
                "pharmacovigilance run, graded by CTCAE."
            ),
            prefetch=prefetch,
            usageRequirements=_USAGE,
        ),
    ]
