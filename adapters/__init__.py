"""adapters: the EHR side, FHIR R4 I/O (read notes and orders, write findings back).

Public names only; everything else is an implementation detail. See ``adapters/README_SECTION.md``.
"""

from adapters.adverse_events import fetch_adverse_events, parse_adverse_events
from adapters.auth import Auth, BearerTokenAuth, SmartBackendAuth, SmartBackendConfig
from adapters.bulk_load import load_resources, read_ndjson_dir
from adapters.capabilities import CapabilityReport, ResourceNeed, assess, check_capabilities
from adapters.client import FhirClient
from adapters.config import FhirClientConfig
from adapters.context import fetch_patient_context
from adapters.detected_issues import fetch_detected_issues, parse_detected_issues
from adapters.errors import (
    AdapterError,
    CapabilityError,
    FhirAuthError,
    FhirConfigError,
    FhirConflictError,
    FhirHttpError,
    FhirNotFoundError,
    FhirProtocolError,
    FhirRequestError,
    FhirServerError,
    FhirThrottledError,
    FhirTransportError,
    LoadInputError,
    MappingError,
    ResourceBuildError,
)
from adapters.identifiers import (
    SID_ADE_SUMMARY,
    SID_ADVERSE_EVENT,
    SID_DETECTED_ISSUE,
    SID_DEVICE,
)
from adapters.notes import last_updated_bounds, note_from_document, pull_notes
from adapters.orders import order_from_request, pull_orders
from adapters.outcome import OutcomeIssue, ValidationResult
from adapters.phenotype import (
    ObservationComponent,
    PhenotypeObservationInput,
    PrimaryCancerConditionInput,
    withdraw_lost_observations,
    write_phenotype_observations,
    write_primary_cancer_conditions,
)
from adapters.prefetch import ParsedPrefetch, parse_medication_requests, parse_prefetch
from adapters.records import (
    AdeSummaryInput,
    AdverseEventInput,
    ConditionRecord,
    DetectedIssueInput,
    LoadReport,
    MedicationOrder,
    Note,
    PatientContext,
    PatientRecord,
    PullStats,
    RecordedAdverseEvent,
    RecordedDetectedIssue,
    TypeLoadCounts,
    WriteFailure,
    WriteReport,
)
from adapters.writer import (
    withdraw_adverse_events,
    withdraw_detected_issues,
    write_ade_summaries,
    write_adverse_events,
    write_detected_issues,
)

__all__ = [
    "SID_ADE_SUMMARY",
    "SID_ADVERSE_EVENT",
    "SID_DETECTED_ISSUE",
    "SID_DEVICE",
    "AdapterError",
    "AdeSummaryInput",
    "AdverseEventInput",
    "Auth",
    "BearerTokenAuth",
    "CapabilityError",
    "CapabilityReport",
    "ConditionRecord",
    "DetectedIssueInput",
    "FhirAuthError",
    "FhirClient",
    "FhirClientConfig",
    "FhirConfigError",
    "FhirConflictError",
    "FhirHttpError",
    "FhirNotFoundError",
    "FhirProtocolError",
    "FhirRequestError",
    "FhirServerError",
    "FhirThrottledError",
    "FhirTransportError",
    "LoadInputError",
    "LoadReport",
    "MappingError",
    "MedicationOrder",
    "Note",
    "ObservationComponent",
    "OutcomeIssue",
    "ParsedPrefetch",
    "PatientContext",
    "PatientRecord",
    "PhenotypeObservationInput",
    "PrimaryCancerConditionInput",
    "PullStats",
    "RecordedAdverseEvent",
    "RecordedDetectedIssue",
    "ResourceBuildError",
    "ResourceNeed",
    "SmartBackendAuth",
    "SmartBackendConfig",
    "TypeLoadCounts",
    "ValidationResult",
    "WriteFailure",
    "WriteReport",
    "assess",
    "check_capabilities",
    "fetch_adverse_events",
    "fetch_detected_issues",
    "fetch_patient_context",
    "last_updated_bounds",
    "load_resources",
    "note_from_document",
    "order_from_request",
    "parse_adverse_events",
    "parse_detected_issues",
    "parse_medication_requests",
    "parse_prefetch",
    "pull_notes",
    "pull_orders",
    "read_ndjson_dir",
    "withdraw_adverse_events",
    "withdraw_detected_issues",
    "withdraw_lost_observations",
    "write_ade_summaries",
    "write_adverse_events",
    "write_detected_issues",
    "write_phenotype_observations",
    "write_primary_cancer_conditions",
]
