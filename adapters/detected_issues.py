"""DetectedIssues read back from the server (ours, by identifier system): the sync's withdrawals and e2e scoring."""

from __future__ import annotations

from typing import Any

from adapters.bundle import resources_of
from adapters.client import FhirClient
from adapters.fhirjson import coding_in, extension, meta_value, reference_id
from adapters.fhirtime import parse_datetime
from adapters.identifiers import CS_DETECTED_ISSUE, EXT_MODEL_SCORE, SID_DETECTED_ISSUE
from adapters.records import RecordedDetectedIssue

Resource = dict[str, Any]


def _our_key(resource: Resource) -> str | None:
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == SID_DETECTED_ISSUE:
            value = identifier.get("value")
            return str(value) if value else None
    return None


def detected_issue_record(resource: Resource) -> RecordedDetectedIssue:
    """One DetectedIssue as a typed record (ours or another system's: ``key`` tells them apart)."""
    coding = coding_in(resource.get("code"), CS_DETECTED_ISSUE)
    score = extension(resource, EXT_MODEL_SCORE)
    value = score.get("valueDecimal") if score is not None else None
    implicated = tuple(
        rid for ref in resource.get("implicated") or [] if (rid := reference_id(ref, "MedicationRequest")) is not None
    )
    detail = resource.get("detail")
    severity = resource.get("severity")
    return RecordedDetectedIssue(
        id=str(resource.get("id") or ""),
        key=_our_key(resource),
        patient_id=reference_id(resource.get("patient"), "Patient"),
        status=str(resource.get("status") or "unknown"),
        code=str(coding["code"]) if coding is not None and coding.get("code") else None,
        severity=str(severity) if isinstance(severity, str) else None,
        identified=parse_datetime(resource.get("identifiedDateTime")),
        medication_request_ids=implicated,
        detail=str(detail) if isinstance(detail, str) else None,
        score=float(value) if isinstance(value, int | float) else None,
        version_id=meta_value(resource, "versionId"),
    )


def parse_detected_issues(bundle_or_resources: Any) -> list[RecordedDetectedIssue]:
    """Every DetectedIssue in a Bundle, a resource or a list of either."""
    resources = resources_of(bundle_or_resources)
    return [detected_issue_record(r) for r in resources if r.get("resourceType") == "DetectedIssue"]


async def fetch_detected_issues(
    client: FhirClient, patient_id: str, *, ours_only: bool = True
) -> list[RecordedDetectedIssue]:
    """A patient's DetectedIssues, withdrawn ones included; ``ours_only``: those with our identifier system.

    The token search ``identifier=<system>|`` matches any value of our system, so other systems' issues are
    not even read; the records are filtered again here in case a server ignores the system-only form.
    """
    params = [("patient", f"Patient/{patient_id}")]
    if ours_only:
        params.append(("identifier", f"{SID_DETECTED_ISSUE}|"))
    pages = [bundle async for bundle in client.search_bundles("DetectedIssue", params)]
    records = parse_detected_issues(pages)
    return [r for r in records if r.key is not None] if ours_only else records
