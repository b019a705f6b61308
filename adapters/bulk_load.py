"""Idempotent bulk load of raw FHIR R4 resources (Synthea bulk NDJSON, the synthetic cohort).

Each resource goes in as ``PUT Type/id`` (update-as-create) inside transaction Bundles, types in dependency
order so that references resolve (HAPI enforces referential integrity and resolves inline match URLs such
as ``Practitioner?identifier=...`` inside transactions). An identical PUT creates no new version, so loading
twice leaves the server unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adapters.bundle import status_code
from adapters.client import FhirClient
from adapters.errors import LoadInputError
from adapters.records import LoadReport

log = logging.getLogger(__name__)

Resource = dict[str, Any]

DEPENDENCY_ORDER: tuple[str, ...] = (
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
    "Coverage",
    "Encounter",
    "Condition",
    "AllergyIntolerance",
    "Medication",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationStatement",
    "CareTeam",
    "Goal",
    "CarePlan",
    "Observation",
    "DiagnosticReport",
    "Procedure",
    "Immunization",
    "ImagingStudy",
    "Device",
    "SupplyDelivery",
    "Claim",
    "ExplanationOfBenefit",
    "DocumentReference",
    "Provenance",
)


def _rank(resource_type: str) -> tuple[int, str]:
    if resource_type == "Provenance":
        return len(DEPENDENCY_ORDER) + 1, resource_type
    try:
        return DEPENDENCY_ORDER.index(resource_type), resource_type
    except ValueError:
        # Types we do not know go last, in name order; Provenance, which points at anything, stays after them.
        return len(DEPENDENCY_ORDER), resource_type


def read_ndjson_dir(path: Path | str) -> Iterator[Resource]:
    """Resources of every ``<Type>*.ndjson`` file in a directory, files in dependency order.

    Files whose name does not start with a resource type (a bulk export's ``log.ndjson``) are left out.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise LoadInputError("OV-1090", f"{folder} is not a directory of NDJSON files; give the bulk export folder")
    files = [f for f in folder.glob("*.ndjson") if f.name[:1].isupper()]
    for file in sorted(files, key=lambda f: (_rank(f.name.split(".", 1)[0]), f.name)):
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    resource = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LoadInputError(
                        "OV-1091", f"{file.name}:{number} is not valid JSON ({exc.msg}); fix the file"
                    ) from exc
                if not isinstance(resource, dict) or "resourceType" not in resource:
                    raise LoadInputError("OV-1092", f"{file.name}:{number} is not a FHIR resource (no resourceType)")
                yield resource


def _checked(resource: Resource) -> Resource:
    rid = resource.get("id")
    rtype = resource.get("resourceType")
    if not rtype or not isinstance(rid, str) or not rid:
        raise LoadInputError(
            "OV-1093", f"a {rtype or 'resource'} has no id; bulk load needs client ids to stay idempotent"
        )
    if rid.isdigit():
        raise LoadInputError(
            "OV-1094",
            f"{rtype}/{rid}: purely numeric ids are refused by HAPI for client-assigned ids; prefix them",
        )
    return resource


def _transaction(batch: list[Resource]) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in batch
        ],
    }


async def load_resources(client: FhirClient, resources: Iterable[Resource], batch_size: int = 200) -> LoadReport:
    """Load resources idempotently; per-type counts of what was sent, created and updated-or-unchanged."""
    if batch_size < 1:
        raise LoadInputError("OV-1095", f"batch size {batch_size} must be at least 1")
    by_type: dict[str, dict[str, Resource]] = {}
    for resource in resources:
        checked = _checked(resource)
        # The last copy of a duplicated id wins, as it would on the server.
        by_type.setdefault(str(checked["resourceType"]), {})[str(checked["id"])] = checked
    report = LoadReport()
    for rtype in sorted(by_type, key=_rank):
        items = list(by_type[rtype].values())
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            response = await client.transaction(_transaction(batch))
            statuses = [status_code(e.get("response") or {}) for e in response.get("entry") or []]
            created = sum(1 for s in statuses if s == 201)
            report.add(rtype, sent=len(batch), created=created, updated_or_unchanged=len(batch) - created)
            log.info(
                "bulk load progress",
                extra={"resource_type": rtype, "done": start + len(batch), "total": len(items)},
            )
    return report
