"""The patient context for the recommender, gathered in one call with bounded concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from adapters.bundle import matches
from adapters.client import FhirClient
from adapters.clinical import active_clinical_condition, allergy_label, patient_from_resource
from adapters.fhirtime import format_datetime
from adapters.notes import note_from_document
from adapters.orders import INCLUDE_MEDICATION, orders_from_bundle
from adapters.records import ConditionRecord, MedicationOrder, Note, PatientContext
from adapters.text import TextSkip

T = TypeVar("T")
Resource = dict[str, Any]


async def fetch_patient_context(
    client: FhirClient,
    patient_id: str,
    *,
    now: datetime | None = None,
    recent_days: int | None = 180,
    max_notes: int = 10,
    concurrency: int = 4,
) -> PatientContext:
    """Patient, active Conditions, active and recent orders, active allergies and recent current notes.

    At most ``concurrency`` requests run at once. ``recent_days=None`` takes orders and notes of any age
    (notes still limited to the newest ``max_notes``).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    gate = asyncio.Semaphore(concurrency)
    today = now or datetime.now(UTC)
    since = today - timedelta(days=recent_days) if recent_days is not None else None
    subject = f"Patient/{patient_id}"

    async def bounded(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    async def collect(resource_type: str, params: list[tuple[str, str]]) -> list[Resource]:
        pages: list[Resource] = []
        async with gate:
            async for bundle in client.search_bundles(resource_type, params):
                pages.append(bundle)
        return pages

    order_queries = [[("patient", subject), ("status", "active"), INCLUDE_MEDICATION]]
    if since is not None:
        order_queries.append([("patient", subject), ("authoredon", f"ge{format_datetime(since)}"), INCLUDE_MEDICATION])
    note_params = [
        ("patient", subject),
        ("status", "current"),
        ("_sort", "-date"),
        ("_count", str(max_notes)),
    ]
    if since is not None:
        note_params.append(("date", f"ge{format_datetime(since)}"))

    try:
        async with asyncio.TaskGroup() as group:
            patient_task = group.create_task(bounded(client.read("Patient", patient_id)))
            condition_task = group.create_task(
                collect("Condition", [("patient", subject), ("clinical-status", "active")])
            )
            allergy_task = group.create_task(
                collect("AllergyIntolerance", [("patient", subject), ("clinical-status", "active")])
            )
            order_tasks = [group.create_task(collect("MedicationRequest", q)) for q in order_queries]
            note_task = group.create_task(bounded(_first_page(client, note_params)))
    except BaseExceptionGroup as failed:
        # Callers handle our error family, not task-group wrappers: surface the first real cause.
        raise _first_cause(failed) from None

    patient = patient_from_resource(patient_task.result())
    conditions = _conditions(condition_task.result())
    allergies = sorted({label for b in allergy_task.result() for r in matches(b) if (label := allergy_label(r))})
    medications = await _orders(client, [b for t in order_tasks for b in t.result()])
    documents = [d for d in matches(note_task.result()) if d.get("resourceType") == "DocumentReference"][:max_notes]
    notes = await asyncio.gather(*(bounded(_note_or_none(client, d)) for d in documents))
    return PatientContext(
        patient_id=patient_id,
        age=patient.age_on(today.date()),
        sex=patient.sex,
        conditions=conditions,
        medications=medications,
        allergies=allergies,
        recent_notes=[n for n in notes if n is not None and n.is_current],
    )


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_cause(first) if isinstance(first, BaseExceptionGroup) else first


async def _first_page(client: FhirClient, params: list[tuple[str, str]]) -> Resource:
    async for bundle in client.search_bundles("DocumentReference", params, max_pages=1):
        return bundle
    return {"resourceType": "Bundle", "entry": []}


def _conditions(pages: list[Resource]) -> list[ConditionRecord]:
    seen: dict[str, ConditionRecord] = {}
    for bundle in pages:
        for resource in matches(bundle):
            if (record := active_clinical_condition(resource)) is not None:
                seen.setdefault(record.id, record)
    return list(seen.values())


async def _orders(client: FhirClient, pages: list[Resource]) -> list[MedicationOrder]:
    cache: dict[str, Resource] = {}
    unique: dict[str, MedicationOrder] = {}
    for bundle in pages:
        for order in await orders_from_bundle(client, bundle, cache):
            unique.setdefault(order.id, order)
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(unique.values(), key=lambda o: o.authored_on or oldest, reverse=True)


async def _note_or_none(client: FhirClient, document: Resource) -> Note | None:
    try:
        return await note_from_document(document, client)
    except TextSkip:
        return None
