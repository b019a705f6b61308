"""Write-back: findings -> transaction Bundles that a re-run turns into no-ops.

How each resource stays idempotent:
- Device: conditional create (``ifNoneExist: identifier=...``).
- AdverseEvent: update-as-create at a deterministic id (R4 AdverseEvent has no ``identifier`` search
  parameter, so a conditional create cannot find it); an identical PUT creates no new version.
- DetectedIssue: conditional update by identifier (``PUT DetectedIssue?identifier=...``): an identical PUT is a
  no-op, a changed warning is replaced, and a withdrawal (status ``cancelled``) is an update of the same resource.
- ADE summary DocumentReference: conditional update by identifier, so a re-run replaces it.
- AdverseEvent withdrawal (a re-read note no longer states the finding): the resource as read, with R5's
  status ``entered-in-error`` in its cross-version extension, PUT at its id; a repeated withdrawal is identical.
- Provenance: conditional create by a tag holding a digest of the target and its content (R4 Provenance has
  no identifier); a changed target gets a new Provenance, an unchanged one none.

A batch the server refuses (4xx) is split into single items so that one bad item cannot block the others;
its failure keeps the server's diagnostics. 409 is retried once (another writer raced us; replaying our
conditional writes is harmless); 412 means duplicates already exist on the server and is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from adapters.build import (
    ade_summary_resource,
    adverse_event_resource,
    detected_issue_resource,
    device_resource,
    provenance_resource,
)
from adapters.bundle import status_code
from adapters.client import FhirClient
from adapters.errors import FhirConflictError, FhirNotFoundError, FhirRequestError, ResourceBuildError
from adapters.identifiers import (
    ENTERED_IN_ERROR,
    EXT_R5_ADVERSE_EVENT_STATUS,
    SID_ADE_SUMMARY,
    SID_ADVERSE_EVENT,
    SID_DETECTED_ISSUE,
    SID_DEVICE,
    SID_PROVENANCE,
    content_digest,
    device_key,
    digest,
    logical_id,
    placeholder,
    token_query,
)
from adapters.outcome import diagnostics_of, parse_outcome
from adapters.records import AdeSummaryInput, AdverseEventInput, DetectedIssueInput, WriteFailure, WriteReport
from adapters.validation import validated

log = logging.getLogger(__name__)

Resource = dict[str, Any]
T = TypeVar("T")
WITHDRAWN_STATUS = "cancelled"


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """The entries one input becomes: its resource first, then its Provenance."""

    key: str
    resource_type: str
    device: tuple[str, str]
    entries: tuple[Resource, ...]


def _device_entry(model_name: str, model_version: str) -> Resource:
    key = device_key(model_name, model_version)
    return {
        "fullUrl": placeholder("device", key),
        "resource": validated(device_resource(model_name, model_version)),
        "request": {
            "method": "POST",
            "url": "Device",
            "ifNoneExist": token_query("identifier", SID_DEVICE, key),
        },
    }


def provenance_entry(
    kind: str,
    key: str,
    resource: Resource,
    target: str,
    device_url: str,
    sources: list[str],
    recorded: datetime,
    activity: str = "CREATE",
) -> Resource:
    prov_key = digest(kind, key, content_digest(resource))
    body = provenance_resource(prov_key, target, device_url, sources, recorded, activity)
    known = {device_url: "Device"}
    if target.startswith("urn:"):
        known[target] = kind_type(kind)
    return {
        "fullUrl": placeholder("provenance", prov_key),
        "resource": validated(body, placeholders=known),
        "request": {
            "method": "POST",
            "url": "Provenance",
            "ifNoneExist": token_query("_tag", SID_PROVENANCE, prov_key),
        },
    }


def kind_type(kind: str) -> str:
    return {"ae": "AdverseEvent", "di": "DetectedIssue", "summary": "DocumentReference", "obs": "Observation",
            "pcc": "Condition"}[kind]


def plan_put_at_id(
    kind: str,
    key: str,
    resource: Resource,
    device_url: str,
    sources: list[str],
    model: tuple[str, str],
    recorded: datetime,
) -> PlannedItem:
    """A validated resource with a deterministic logical id, written by ``PUT`` (update-as-create), and its
    Provenance: an identical re-run creates no new version and no second Provenance."""
    rtype = str(resource["resourceType"])
    target = f"{rtype}/{resource['id']}"
    entry = {"resource": resource, "request": {"method": "PUT", "url": target}}
    prov = provenance_entry(kind, key, resource, target, device_url, sources, recorded)
    return PlannedItem(key, rtype, model, (entry, prov))


def plan_adverse_event(item: AdverseEventInput, recorded: datetime) -> PlannedItem:
    device_url = placeholder("device", device_key(item.model_name, item.model_version))
    resource = validated(adverse_event_resource(item, device_url), placeholders={device_url: "Device"})
    sources = [f"DocumentReference/{item.note_id}"] if item.note_id else []
    model = (item.model_name, item.model_version)
    return plan_put_at_id("ae", item.finding_key, resource, device_url, sources, model, recorded)


def plan_detected_issue(item: DetectedIssueInput, recorded: datetime) -> PlannedItem:
    device_url = placeholder("device", device_key(item.model_name, item.model_version))
    resource = validated(detected_issue_resource(item, device_url), placeholders={device_url: "Device"})
    full_url = placeholder("detected-issue", item.key)
    conditional = "DetectedIssue?" + token_query("identifier", SID_DETECTED_ISSUE, item.key)
    entry = {"fullUrl": full_url, "resource": resource, "request": {"method": "PUT", "url": conditional}}
    sources = [ref for ref in item.evidence_refs if "/" in ref]
    prov = provenance_entry("di", item.key, resource, full_url, device_url, sources, recorded)
    return PlannedItem(item.key, "DetectedIssue", (item.model_name, item.model_version), (entry, prov))


def plan_put_back(
    kind: str, key: str, current: Resource, changes: Resource, model: tuple[str, str], recorded: datetime, activity: str
) -> PlannedItem:
    """``current`` as read from the server with ``changes`` applied, PUT at its id, and a Provenance of
    ``activity``; the server's own meta (versionId, lastUpdated) is not sent back."""
    meta = {k: v for k, v in (current.get("meta") or {}).items() if k in ("tag", "security", "profile")}
    resource = validated({**current, **changes, "meta": meta})
    rtype = str(current["resourceType"])
    target = f"{rtype}/{current['id']}"
    device_url = placeholder("device", device_key(*model))
    entry = {"resource": resource, "request": {"method": "PUT", "url": target}}
    prov = provenance_entry(kind, key, resource, target, device_url, [], recorded, activity=activity)
    return PlannedItem(key, rtype, model, (entry, prov))


def plan_detected_issue_withdrawal(
    current: Resource, model_name: str, model_version: str, recorded: datetime
) -> PlannedItem:
    """``current`` (as read from the server, ours) with status ``cancelled``, PUT at its id, and a Provenance.

    ``cancelled`` rather than ``entered-in-error``: the warning was right when it was raised; the orders
    changed since. The resource is kept, so the EHR's history still shows what was said and when.
    """
    key = next(
        (str(i.get("value")) for i in current.get("identifier") or [] if i.get("system") == SID_DETECTED_ISSUE), None
    )
    if not key or current.get("resourceType") != "DetectedIssue" or not current.get("id"):
        raise ResourceBuildError(
            "OV-0100", "only a DetectedIssue we wrote (our identifier system) can be withdrawn; fix the caller"
        )
    changes = {"status": WITHDRAWN_STATUS}
    return plan_put_back("di", key, current, changes, (model_name, model_version), recorded, "CANCEL")


def plan_adverse_event_withdrawal(
    current: Resource, model_name: str, model_version: str, recorded: datetime
) -> PlannedItem:
    """``current`` (as read from the server, ours) marked entered-in-error, PUT at its id, and a Provenance.

    Kept rather than deleted: the EHR's history still shows what was recorded and when, and its Provenance
    (which references it) stays valid.
    """
    identifier = current.get("identifier") or {}
    key = str(identifier.get("value")) if identifier.get("system") == SID_ADVERSE_EVENT else ""
    if not key or current.get("resourceType") != "AdverseEvent" or not current.get("id"):
        raise ResourceBuildError(
            "OV-1089", "only an AdverseEvent we wrote (our identifier system) can be withdrawn; fix the caller"
        )
    others = [e for e in current.get("extension") or [] if e.get("url") != EXT_R5_ADVERSE_EVENT_STATUS]
    changes = {"extension": [*others, {"url": EXT_R5_ADVERSE_EVENT_STATUS, "valueCode": ENTERED_IN_ERROR}]}
    return plan_put_back("ae", key, current, changes, (model_name, model_version), recorded, "NULLIFY")


def plan_ade_summary(item: AdeSummaryInput, recorded: datetime) -> PlannedItem:
    device_url = placeholder("device", device_key(item.model_name, item.model_version))
    resource = validated(ade_summary_resource(item, device_url), placeholders={device_url: "Device"})
    full_url = placeholder("ade-summary", item.key)
    conditional = "DocumentReference?" + token_query("identifier", SID_ADE_SUMMARY, item.key)
    entry = {"fullUrl": full_url, "resource": resource, "request": {"method": "PUT", "url": conditional}}
    prov = provenance_entry("summary", item.key, resource, full_url, device_url, [], recorded)
    return PlannedItem(item.key, "DocumentReference", (item.model_name, item.model_version), (entry, prov))


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _bundle(batch: Sequence[PlannedItem]) -> tuple[Resource, int]:
    devices = list(dict.fromkeys(item.device for item in batch))
    entries = [_device_entry(name, version) for name, version in devices]
    for item in batch:
        entries.extend(item.entries)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, len(devices)


def _location(entry: Resource) -> str | None:
    location = (entry.get("response") or {}).get("location")
    if not isinstance(location, str):
        return None
    parts = location.split("/_history")[0].rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def _account(batch: Sequence[PlannedItem], response: Resource, device_count: int, report: WriteReport) -> None:
    answers = [e for e in response.get("entry") or [] if isinstance(e, dict)]
    sent_types = ["Device"] * device_count + [
        str(entry["resource"]["resourceType"]) for item in batch for entry in item.entries
    ]
    for rtype, answer in zip(sent_types, answers, strict=False):
        bucket = report.created if status_code(answer.get("response") or {}) == 201 else report.existing
        report.count(bucket, rtype)
    index = device_count
    for item in batch:
        location = _location(answers[index]) if index < len(answers) else None
        if location:
            report.references[item.key] = location
        index += len(item.entries)


def _failure(item: PlannedItem, exc: FhirRequestError | FhirConflictError) -> WriteFailure:
    text = diagnostics_of(parse_outcome(exc.outcome)) if exc.outcome else str(exc)
    return WriteFailure(
        key=item.key, resource_type=item.resource_type, status=exc.status, code=exc.code, diagnostics=text
    )


async def write_batch(
    client: FhirClient, batch: Sequence[PlannedItem], report: WriteReport, *, conflict_retry: bool = True
) -> None:
    """One transaction; on refusal, retry 409 once, then isolate the item(s) at fault."""
    bundle, device_count = _bundle(batch)
    try:
        response = await client.transaction(bundle)
    except FhirConflictError as exc:
        if exc.status == 409 and conflict_retry:
            log.warning("version conflict, replaying the batch once", extra={"items": len(batch)})
            await write_batch(client, batch, report, conflict_retry=False)
            return
        await _split_or_fail(client, batch, report, exc)
        return
    except FhirRequestError as exc:
        await _split_or_fail(client, batch, report, exc)
        return
    _account(batch, response, device_count, report)


async def _split_or_fail(
    client: FhirClient,
    batch: Sequence[PlannedItem],
    report: WriteReport,
    exc: FhirRequestError | FhirConflictError,
) -> None:
    if len(batch) == 1:
        failure = _failure(batch[0], exc)
        report.failures.append(failure)
        log.warning(
            "write refused",
            extra={"key": failure.key, "status": failure.status, "resource_type": failure.resource_type},
        )
        return
    for item in batch:
        await write_batch(client, [item], report)


async def write_planned(
    client: FhirClient, planned: Sequence[PlannedItem], batch_size: int | None = None
) -> WriteReport:
    report = WriteReport()
    size = batch_size or client.config.write_batch_size
    for batch in _chunks(planned, size):
        await write_batch(client, batch, report)
    log.info(
        "write-back done",
        extra={
            "resources_created": report.total_created,
            "existing": sum(report.existing.values()),
            "failed": len(report.failures),
        },
    )
    return report


def plan_all(
    items: Iterable[T], plan: Callable[[T, datetime], PlannedItem], recorded: datetime | None
) -> list[PlannedItem]:
    when = recorded or datetime.now(UTC)
    return [plan(item, when) for item in items]


async def write_adverse_events(
    client: FhirClient,
    items: Iterable[AdverseEventInput],
    *,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Record ADE findings as AdverseEvents (with Device and Provenance); a re-run writes nothing new."""
    return await write_planned(client, plan_all(items, plan_adverse_event, recorded), batch_size)


async def write_detected_issues(
    client: FhirClient,
    items: Iterable[DetectedIssueInput],
    *,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Record overprescription warnings as DetectedIssues; the same key replaces (or leaves, if identical) it."""
    return await write_planned(client, plan_all(items, plan_detected_issue, recorded), batch_size)


async def withdraw_detected_issues(
    client: FhirClient,
    issue_ids: Iterable[str],
    *,
    model_name: str,
    model_version: str,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Set our DetectedIssues (by logical id) to ``cancelled``; each is read first so nothing else changes.

    ``references`` maps each withdrawn issue's key to its ``DetectedIssue/id``.
    """
    when = recorded or datetime.now(UTC)
    planned = [
        plan_detected_issue_withdrawal(await client.read("DetectedIssue", rid), model_name, model_version, when)
        for rid in issue_ids
    ]
    return await write_planned(client, planned, batch_size)


async def withdraw_adverse_events(
    client: FhirClient,
    finding_keys: Iterable[str],
    *,
    model_name: str,
    model_version: str,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> tuple[WriteReport, list[str]]:
    """Mark the AdverseEvents we wrote for these finding keys entered-in-error; each is read first so nothing
    else changes.

    Returns the write report (``references``: key -> ``AdverseEvent/id``) and the keys whose AdverseEvent the
    server no longer has (nothing left to withdraw there).
    """
    when = recorded or datetime.now(UTC)
    planned: list[PlannedItem] = []
    gone: list[str] = []
    for key in finding_keys:
        try:
            current = await client.read("AdverseEvent", logical_id("ae", key))
        except FhirNotFoundError:
            gone.append(key)
            continue
        planned.append(plan_adverse_event_withdrawal(current, model_name, model_version, when))
    return await write_planned(client, planned, batch_size), gone


async def write_ade_summaries(
    client: FhirClient,
    items: Iterable[AdeSummaryInput],
    *,
    batch_size: int | None = None,
    recorded: datetime | None = None,
) -> WriteReport:
    """Write per-drug summaries; one per key (drug and period), replaced when its content changed."""
    return await write_planned(client, plan_all(items, plan_ade_summary, recorded), batch_size)
