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
    A folder with no resource at all is refused: loading it would report success having done nothing.
    """
    for _where, resource in read_ndjson_rows(path, allow_empty=False):
        yield resource


def read_ndjson_rows(path: Path | str, *, allow_empty: bool) -> Iterator[tuple[str, Resource]]:
    """Like :func:`read_ndjson_dir`, each resource with its ``file:line`` for messages about its content."""
    folder = Path(path)
    if not folder.is_dir():
        raise LoadInputError("OV-1090", f"{folder} is not a directory of NDJSON files; give the bulk export folder")
    files = [f for f in folder.glob("*.ndjson") if f.name[:1].isupper()]
    found = 0
    for file in sorted(files, key=lambda f: (_rank(f.name.split(".", 1)[0]), f.name)):
        for number, line in _lines(file):
            where = f"{file.name}:{number}"
            if not line.strip():
                continue
            resource = _parse(line, where)
            if not isinstance(resource, dict) or "resourceType" not in resource:
                raise LoadInputError("OV-1092", f"{where} is not a FHIR resource (no resourceType)")
            found += 1
            yield where, resource
    if not found and not allow_empty:
        raise LoadInputError(
            "OV-1099",
            f"{folder} has no FHIR resources (no non-empty <Type>*.ndjson file); give the bulk export folder",
        )


def _lines(file: Path) -> Iterator[tuple[int, str]]:
    # Bytes, decoded line by line: a text-mode reader decodes ahead in chunks, so its error would name
    # the wrong line.
    try:
        handle = file.open("rb")
    except OSError as exc:
        reason = "a folder" if file.is_dir() else (exc.strerror or type(exc).__name__)
        raise LoadInputError("OV-1096", f"{file.name} cannot be read as an NDJSON file ({reason})") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise LoadInputError(
                    "OV-1096", f"{file.name}:{number} is not UTF-8 text (byte {exc.start + 1}); save it as UTF-8"
                ) from exc


def _parse(line: str, where: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise LoadInputError("OV-1091", f"{where} is not valid JSON ({exc.msg}); fix the file") from exc
    except (ValueError, RecursionError) as exc:
        # Valid JSON the parser still refuses: a number over Python's digit limit, or nesting deeper than
        # the recursion limit. Neither is a FHIR resource.
        what = "nests too deeply" if isinstance(exc, RecursionError) else "has a number too long to read"
        raise LoadInputError("OV-1097", f"{where} {what}; fix the file") from exc


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
