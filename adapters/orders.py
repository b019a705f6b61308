"""MedicationRequest -> MedicationOrder, and the incremental pull of orders by ``_lastUpdated``.

The drug comes from ``medicationCodeableConcept`` or from the referenced Medication: contained, included in
the same page with ``_include=MedicationRequest:medication``, or read when the server did not include it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from adapters.bundle import included, matches
from adapters.client import FhirClient
from adapters.errors import FhirNotFoundError, MappingError
from adapters.fhirjson import coding_in, concept_text, first_code, reference_id, reference_text
from adapters.fhirtime import parse_datetime
from adapters.identifiers import RXNORM
from adapters.notes import since_params
from adapters.records import MedicationOrder, PullStats

log = logging.getLogger(__name__)

Resource = dict[str, Any]
INCLUDE_MEDICATION = ("_include", "MedicationRequest:medication")

# RxNorm clinical drug names: "[quantity] ingredient strength UNIT[/UNIT] form", ingredients joined by " / ".
_LEADING_QUANTITY = re.compile(r"^(?:NDA\d+\s+)?(?:\d+(?:\.\d+)?\s+(?:HR|ML|ACTUAT|MG|UNT)\s+)+", re.IGNORECASE)
_STRENGTH = re.compile(
    r"\s+\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)*\s*(?:MG|ML|UNT|MCG|MEQ|%|G|MG/ML|UNT/ML)\b.*$", re.IGNORECASE
)
_BRAND = re.compile(r"\s*\[[^\]]*\]\s*$")


def ingredient_from_name(name: str | None) -> str | None:
    """Active ingredient(s) of an RxNorm clinical drug name, lower case.

    "Cisplatin 50 MG Injection" -> "cisplatin".

    None for names that are not of that shape (packs, brand-only devices).
    """
    if not name:
        return None
    text = _BRAND.sub("", name.strip())
    text = _LEADING_QUANTITY.sub("", text)
    found: list[str] = []
    for part in text.split(" / "):
        stripped = _STRENGTH.sub("", part).strip(" ,")
        if stripped and stripped != part.strip():
            found.append(stripped.lower())
    return " / ".join(found) if found else None


def _dosage_text(request: Resource) -> str | None:
    texts: list[str] = []
    for dosage in request.get("dosageInstruction") or []:
        if not isinstance(dosage, dict):
            continue
        if dosage.get("text"):
            texts.append(str(dosage["text"]))
            continue
        parts: list[str] = []
        for rate in dosage.get("doseAndRate") or []:
            quantity = rate.get("doseQuantity") if isinstance(rate, dict) else None
            if isinstance(quantity, dict) and quantity.get("value") is not None:
                value = quantity["value"]
                shown = int(value) if float(value).is_integer() else value
                parts.append(f"{shown} {quantity.get('unit') or quantity.get('code') or 'dose'}".strip())
        repeat = ((dosage.get("timing") or {}).get("repeat")) or {}
        if repeat.get("frequency") and repeat.get("period") and repeat.get("periodUnit"):
            period = repeat["period"]
            shown_period = int(period) if float(period).is_integer() else period
            parts.append(f"{repeat['frequency']} time(s) per {shown_period} {repeat['periodUnit']}")
        if dosage.get("asNeededBoolean"):
            parts.append("as needed")
        if parts:
            texts.append(", ".join(parts))
    return "; ".join(texts) or None


def _drug(
    request: Resource, medications: Mapping[str, Resource]
) -> tuple[Resource | None, Resource | None, str | None]:
    """(code concept, Medication resource, medication id) of a request."""
    if isinstance(request.get("medicationCodeableConcept"), dict):
        return request["medicationCodeableConcept"], None, None
    reference = reference_text(request.get("medicationReference"))
    if reference is None:
        return None, None, None
    if reference.startswith("#"):
        contained = next((c for c in request.get("contained") or [] if f"#{c.get('id')}" == reference), None)
        return (contained or {}).get("code"), contained, None
    medication_id = reference_id(request.get("medicationReference"), "Medication")
    medication = medications.get(f"Medication/{medication_id}") if medication_id else None
    return (medication or {}).get("code"), medication, medication_id


def _ingredient(medication: Resource | None, display: str | None) -> str | None:
    if medication is not None:
        names = [concept_text(i.get("itemCodeableConcept")) for i in medication.get("ingredient") or []]
        found = [n.lower() for n in names if n]
        if found:
            return " / ".join(found)
    return ingredient_from_name(display)


def order_from_request(request: Resource, medications: Mapping[str, Resource] | None = None) -> MedicationOrder:
    """Map one MedicationRequest (pure); ``medications`` holds Medications by ``Medication/<id>``."""
    concept, medication, medication_id = _drug(request, medications or {})
    rxnorm = coding_in(concept, RXNORM)
    _, _, fallback_display = first_code(concept)
    display = (rxnorm or {}).get("display") or concept_text(concept) or fallback_display
    meta = request.get("meta") or {}
    request_id = request.get("id")
    if not isinstance(request_id, str) or not request_id:
        # a card would otherwise propose deleting "MedicationRequest/None"
        raise MappingError("OV-1070", "a MedicationRequest without an id cannot be mapped; give every order an id")
    return MedicationOrder(
        id=request_id,
        patient_id=reference_id(request.get("subject"), "Patient"),
        encounter_id=reference_id(request.get("encounter"), "Encounter"),
        rxnorm_code=(rxnorm or {}).get("code"),
        display=display,
        ingredient=_ingredient(medication, display),
        status=str(request.get("status", "unknown")),
        intent=str(request.get("intent", "unknown")),
        authored_on=parse_datetime(request.get("authoredOn")),
        dosage_text=_dosage_text(request),
        requester=reference_text(request.get("requester")),
        last_updated=parse_datetime(meta.get("lastUpdated")),
        medication_id=medication_id,
        version_id=meta.get("versionId"),
        reasons=tuple(label for c in request.get("reasonCode") or [] if (label := concept_text(c))),
    )


async def orders_from_bundle(client: FhirClient, bundle: Resource, cache: dict[str, Resource]) -> list[MedicationOrder]:
    """Map a search page, reading Medications the server did not include (kept in ``cache``)."""
    for medication in included(bundle):
        if medication.get("resourceType") == "Medication":
            cache[f"Medication/{medication.get('id')}"] = medication
    requests = [r for r in matches(bundle) if r.get("resourceType") == "MedicationRequest"]
    for request in requests:
        medication_id = reference_id(request.get("medicationReference"), "Medication")
        key = f"Medication/{medication_id}"
        if medication_id and key not in cache:
            try:
                cache[key] = await client.read("Medication", medication_id)
            except FhirNotFoundError:
                log.warning(
                    "medication not found",
                    extra={"medication_id": medication_id, "request_id": request.get("id")},
                )
                cache[key] = {}
    return [order_from_request(r, cache) for r in requests]


async def pull_orders(
    client: FhirClient,
    since: datetime | None,
    *,
    stats: PullStats | None = None,
    params: list[tuple[str, str]] | None = None,
) -> AsyncIterator[MedicationOrder]:
    """MedicationRequests changed after ``since`` (all when None), oldest change first, drugs resolved."""
    tally = stats if stats is not None else PullStats()
    cache: dict[str, Resource] = {}
    query = [*since_params(since), INCLUDE_MEDICATION, *(params or [])]
    async for bundle in client.search_bundles("MedicationRequest", query):
        tally.pages += 1
        for order in await orders_from_bundle(client, bundle, cache):
            tally.saw(order.last_updated)
            tally.yielded += 1
            yield order
