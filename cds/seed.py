"""Seeding a FHIR server: the public Synthea sample (when present) and the synthetic oncology cohort.

Everything goes in through ``adapters.load_resources`` (``PUT Type/id`` transactions), so seeding
twice leaves the server as it was: the same ids, no new resources.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters import FhirClient, LoadReport, load_resources, read_ndjson_dir
from cds.cohort import Cohort, write_ndjson, write_truth

log = logging.getLogger(__name__)

SYNTHEA_FOLDER = "synthea_bulk_10"
# Shared reference data Synthea resources point at (by match URL); loaded whole, they are small.
_SHARED_TYPES = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole"})


@dataclass(frozen=True)
class LoadCounts:
    """Per resource type: how many were sent and how many of those the server newly created."""

    sent: Mapping[str, int]
    created: Mapping[str, int]

    @classmethod
    def of(cls, report: LoadReport) -> LoadCounts:
        items = sorted(report.by_type.items())
        return cls({k: v.sent for k, v in items}, {k: v.created for k, v in items})

    @property
    def total_created(self) -> int:
        return sum(self.created.values())


@dataclass(frozen=True)
class SeedReport:
    synthea: LoadCounts | None
    synthea_note: str | None  # why Synthea was skipped, if it was
    cohort: LoadCounts
    truth_dir: Path
    server_counts: Mapping[str, int]

    @property
    def created(self) -> int:
        return self.cohort.total_created + (self.synthea.total_created if self.synthea else 0)


def synthea_dir(data_dir: Path) -> Path | None:
    folder = data_dir / SYNTHEA_FOLDER
    return folder if folder.is_dir() else None


def _patient_of(resource: Mapping[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id"))
    for key in ("subject", "patient"):
        ref = resource.get(key)
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str):
            kind, _, ident = target.partition("/")
            if kind == "Patient":
                return ident
    return None


def synthea_subset(resources: Iterable[dict[str, Any]], patients: int | None) -> Iterator[dict[str, Any]]:
    """All resources, or only those of the first ``patients`` Patients (plus shared organisations etc.).

    Resources of the kept patients only reference each other or the shared types, so the subset
    loads without dangling references.
    """
    if patients is None:
        yield from resources
        return
    materialised = list(resources)
    keep = {str(r["id"]) for r in materialised if r.get("resourceType") == "Patient"}
    keep = set(sorted(keep)[:patients])
    for resource in materialised:
        if resource.get("resourceType") in _SHARED_TYPES or _patient_of(resource) in keep:
            yield resource


async def seed_synthea(
    client: FhirClient, folder: Path, *, patients: int | None = None, batch_size: int = 200
) -> LoadCounts:
    resources = synthea_subset(read_ndjson_dir(folder), patients)
    return LoadCounts.of(await load_resources(client, resources, batch_size=batch_size))


async def seed_cohort(client: FhirClient, cohort: Cohort, truth_dir: Path, *, batch_size: int = 200) -> LoadCounts:
    """Write the truth files (and the resources as NDJSON under ``truth_dir/fhir``), then load the cohort."""
    write_truth(cohort, truth_dir)
    write_ndjson(cohort, truth_dir / "fhir")
    return LoadCounts.of(await load_resources(client, cohort.resources, batch_size=batch_size))


async def server_counts(client: FhirClient, types: Iterable[str]) -> dict[str, int]:
    return {kind: await client.count(kind) for kind in sorted(set(types))}


async def seed_all(
    client: FhirClient,
    cohort: Cohort,
    truth_dir: Path,
    *,
    data_dir: Path | None,
    synthea_patients: int | None = None,
    batch_size: int = 200,
) -> SeedReport:
    """Synthea (skipped with a note when ``data_dir`` lacks it), then the cohort, then server totals."""
    # Reach the server before anything is written: truth files beside a cohort that never reached the
    # server would let `eval e2e` score a server against notes it does not hold.
    await client.capabilities()
    synthea: LoadCounts | None = None
    note: str | None = None
    folder = synthea_dir(data_dir) if data_dir is not None else None
    if data_dir is None:
        note = "Synthea sample not requested"
    elif folder is None:
        note = f"no {SYNTHEA_FOLDER}/ under {data_dir}; Synthea sample skipped (a fresh clone lacks ../shared)"
    else:
        synthea = await seed_synthea(client, folder, patients=synthea_patients, batch_size=batch_size)
        log.info("seeded synthea", extra={"resources_created": synthea.total_created})
    counts = await seed_cohort(client, cohort, truth_dir, batch_size=batch_size)
    log.info("seeded cohort", extra={"resources_created": counts.total_created, "patients": cohort.patients})
    types = set(counts.sent) | (set(synthea.sent) if synthea else set())
    return SeedReport(synthea, note, counts, truth_dir, await server_counts(client, types))
