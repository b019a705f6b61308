"""CDS Hooks 2.0.1 protocol: discovery, hook calls, cards, feedback and the EHR's JWT.

It knows nothing of FHIR servers or models: ``cds`` implements :class:`DecisionService` and builds the app
with :func:`create_hooks_app` (or includes :func:`create_cds_router` in its own app).
"""

from hooks.app import create_hooks_app, install_cors, tidy_openapi
from hooks.cards import SUMMARY_MAX_CHARS, Action, Card, CdsResponse, Link, Source, Suggestion
from hooks.config import HooksConfig
from hooks.errors import (
    AuthenticationFailed,
    BadHookRequest,
    CardInvariantError,
    DecisionTimeout,
    HooksConfigError,
    HooksError,
    PayloadTooLarge,
    PrefetchUnavailable,
    UnknownService,
)
from hooks.jwt import InMemoryReplayStore, IssuerTrust, JwtConfig, JwtVerifier, ReplayStore, VerifiedClient
from hooks.protocol import DecisionService, HookCall
from hooks.render import (
    OVERRIDE_REASONS,
    AlternativeOrder,
    PriorEvent,
    overprescription_card,
    prior_ade_card,
    stable_uuid,
)
from hooks.requests import (
    FeedbackItem,
    FeedbackRequest,
    FhirAuthorization,
    HookContext,
    HookName,
    OrderSelectContext,
    OrderSelectRequest,
    OrderSignContext,
    OrderSignRequest,
    PatientViewContext,
    PatientViewRequest,
)
from hooks.router import create_cds_router
from hooks.services import DEFAULT_PREFETCH, DiscoveryResponse, ServiceDefinition, default_services
from hooks.wire import Coding

__all__ = [
    "DEFAULT_PREFETCH",
    "OVERRIDE_REASONS",
    "SUMMARY_MAX_CHARS",
    "Action",
    "AlternativeOrder",
    "AuthenticationFailed",
    "BadHookRequest",
    "Card",
    "CardInvariantError",
    "CdsResponse",
    "Coding",
    "DecisionService",
    "DecisionTimeout",
    "DiscoveryResponse",
    "FeedbackItem",
    "FeedbackRequest",
    "FhirAuthorization",
    "HookCall",
    "HookContext",
    "HookName",
    "HooksConfig",
    "HooksConfigError",
    "HooksError",
    "InMemoryReplayStore",
    "IssuerTrust",
    "JwtConfig",
    "JwtVerifier",
    "Link",
    "OrderSelectContext",
    "OrderSelectRequest",
    "OrderSignContext",
    "OrderSignRequest",
    "PatientViewContext",
    "PatientViewRequest",
    "PayloadTooLarge",
    "PrefetchUnavailable",
    "PriorEvent",
    "ReplayStore",
    "ServiceDefinition",
    "Source",
    "Suggestion",
    "UnknownService",
    "VerifiedClient",
    "create_cds_router",
    "create_hooks_app",
    "default_services",
    "install_cors",
    "overprescription_card",
    "prior_ade_card",
    "stable_uuid",
    "tidy_openapi",
]
