"""CDS Hooks 2.0 request models: hook calls (patient-view, order-select, order-sign) and feedback.

Requests are parsed tolerantly (unknown fields ignored, extra context fields kept) but the fields the spec
requires are checked, so a bad call is a 400 here instead of a surprise in the decision service. FHIR content
(``draftOrders``, prefetch) stays raw JSON: this package does not parse FHIR.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, ConfigDict, Field, SecretStr, field_validator, model_validator

from hooks.wire import RequestCoding, RequestModel

HookName = Literal["patient-view", "order-select", "order-sign"]
SUPPORTED_HOOKS: tuple[HookName, ...] = ("patient-view", "order-select", "order-sign")

FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"
USER_REFERENCE = r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$"
RELATIVE_REFERENCE = r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$"
HTTP_URL = r"^https?://[^\s/$.?#][^\s]*$"


class FhirAuthorization(RequestModel):
    """OAuth 2.0 token the EHR grants us for ``fhirServer``; never logged, stored or shared."""

    access_token: SecretStr = Field(min_length=1)
    token_type: Literal["Bearer", "bearer"]
    expires_in: int = Field(ge=0)
    scope: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    patient: str | None = Field(default=None, pattern=FHIR_ID)


def _bundle(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("resourceType") != "Bundle":
        raise ValueError("draftOrders must be a FHIR Bundle (resourceType 'Bundle')")
    return value


class _Context(RequestModel):
    # Later hook versions and vendors add context fields; keep them for the decision service.
    model_config = ConfigDict(extra="allow", frozen=True)

    userId: str = Field(pattern=USER_REFERENCE)
    patientId: str = Field(pattern=FHIR_ID)
    encounterId: str | None = Field(default=None, pattern=FHIR_ID)


class PatientViewContext(_Context):
    """Context of ``patient-view``: the chart was opened."""


class OrderSignContext(_Context):
    """Context of ``order-sign``: orders are about to be signed.

    It also fires on re-sign, so the orders' statuses may be other than draft.
    """

    draftOrders: dict[str, Any]

    _check_bundle = field_validator("draftOrders")(_bundle)


class OrderSelectContext(_Context):
    """Context of ``order-select``: the clinician picked orders; advice should focus on ``selections``."""

    selections: list[Annotated[str, Field(pattern=RELATIVE_REFERENCE)]] = Field(min_length=1)
    draftOrders: dict[str, Any]

    _check_bundle = field_validator("draftOrders")(_bundle)


HookContext = PatientViewContext | OrderSelectContext | OrderSignContext


class _HookRequest(RequestModel):
    hookInstance: str = Field(min_length=1, max_length=200)
    fhirServer: str | None = Field(default=None, pattern=HTTP_URL, max_length=2000)
    fhirAuthorization: FhirAuthorization | None = None
    # A key present with null means "the client looked and found nothing"; an absent key means "not fetched".
    prefetch: dict[str, dict[str, Any] | None] = Field(default_factory=dict)

    @field_validator("prefetch", mode="before")
    @classmethod
    def _null_prefetch_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _server_with_token(self) -> Self:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("cds-r-1: fhirServer is required when fhirAuthorization is sent")
        return self


class PatientViewRequest(_HookRequest):
    hook: Literal["patient-view"]
    context: PatientViewContext


class OrderSelectRequest(_HookRequest):
    hook: Literal["order-select"]
    context: OrderSelectContext


class OrderSignRequest(_HookRequest):
    hook: Literal["order-sign"]
    context: OrderSignContext


HookRequest = Annotated[PatientViewRequest | OrderSelectRequest | OrderSignRequest, Field(discriminator="hook")]


class AcceptedSuggestion(RequestModel):
    id: str = Field(min_length=1, max_length=200)


class OverrideReason(RequestModel):
    reason: RequestCoding | None = None
    userComment: str | None = Field(default=None, max_length=10_000)


class FeedbackItem(RequestModel):
    """What the clinician did with one card; ignored cards are not reported, a card may be reported twice."""

    card: str = Field(min_length=1, max_length=200)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] = Field(default_factory=list)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: AwareDatetime

    @model_validator(mode="after")
    def _consistent_outcome(self) -> Self:
        if self.outcome == "overridden" and self.acceptedSuggestions:
            raise ValueError("an overridden card cannot have acceptedSuggestions")
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("an accepted card cannot have an overrideReason")
        return self


class FeedbackRequest(RequestModel):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)
