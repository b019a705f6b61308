"""Seeding: the Synthea subset keeps whole patients, and seeding twice creates nothing new on the live sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from adapters import FhirClient, FhirClientConfig, read_ndjson_dir
from adapters.errors import FhirTransportError
from cds.cohort import generate_cohort, read_jsonl
from cds.seed import seed_all, synthea_dir, synthea_subset

SHARED_SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea_bulk_10"


def _res(kind: str, rid: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": kind, "id": rid, **fields}


def test_subset_keeps_the_first_patients_and_shared_resources() -> None:
    resources = [
        _res("Organization", "org-1"),
        _res("Patient", "b"),
        _res("Patient", "a"),
        _res("Patient", "c"),
        _res("Encounter", "e-a", subject={"reference": "Patient/a"}),
        _res("Encounter", "e-c", subject={"reference": "Patient/c"}),
        _res("Immunization", "i-b", patient={"reference": "Patient/b"}),
        _res("Device", "d-x", patient={"reference": "Patient/x"}),
    ]
    kept = [r["id"] for r in synthea_subset(resources, 2)]
    assert kept == ["org-1", "b", "a", "e-a", "i-b"]
    assert [r["id"] for r in synthea_subset(resources, None)] == [r["id"] for r in resources]


def test_synthea_dir_is_optional(tmp_path: Path) -> None:
    assert synthea_dir(tmp_path) is None
    (tmp_path / "synthea_bulk_10").mkdir()
    assert synthea_dir(tmp_path) == tmp_path / "synthea_bulk_10"


def test_real_synthea_subset_references_only_kept_patients(prerequisite: Any) -> None:
    prerequisite(SHARED_SYNTHEA.is_dir(), "../shared/data/synthea_bulk_10 is not here")
    subset = list(synthea_subset(read_ndjson_dir(SHARED_SYNTHEA), 3))
    patients = {r["id"] for r in subset if r["resourceType"] == "Patient"}
    assert len(patients) == 3
    referenced = {ref for r in subset for ref in re.findall(r'"reference": "Patient/([^"]+)"', json.dumps(r))}
    assert referenced == patients
    assert any(r["resourceType"] == "DocumentReference" for r in subset)


async def test_seeding_twice_leaves_the_server_unchanged(seeded_sandbox: Any, tmp_path: Path) -> None:
    first = seeded_sandbox
    # With ../shared beside the checkout (as in CI) the Synthea sample is seeded too, never silently left out.
    assert first.synthea_loaded == SHARED_SYNTHEA.is_dir()
    assert first.counts["Patient"] >= 8 + (3 if first.synthea_loaded else 0)
    assert first.counts["DocumentReference"] > 8
    notes = read_jsonl(first.truth_dir / "notes.jsonl")
    assert notes and notes[0]["note_id"].startswith("ov-note-0001-")
    config = FhirClientConfig(base_url=first.base_url, read_timeout_s=180.0, max_retries=2)
    async with FhirClient(config) as client:
        # the sandbox is shared by the whole session: compare with the counts right before re-seeding
        before = {kind: await client.count(kind) for kind in first.counts}
        again = await seed_all(client, generate_cohort(8, 11), tmp_path / "truth", data_dir=None)
        stored = await client.read("DocumentReference", notes[0]["note_id"])
    assert again.created == 0
    assert all(v == 0 for v in again.cohort.created.values())
    for kind, n in again.server_counts.items():
        assert n == before[kind], kind
    assert stored["meta"]["versionId"] == "1"  # identical PUTs made no new version
    assert (tmp_path / "truth" / "notes.jsonl").read_bytes() == (first.truth_dir / "notes.jsonl").read_bytes()


async def test_an_unreachable_server_gets_no_truth_files_written(tmp_path: Path) -> None:
    truth = tmp_path / "truth"
    # port 9 (discard) refuses: the seeding stops before the cohort's truth could describe a server it never reached
    config = FhirClientConfig(base_url="http://127.0.0.1:9/fhir", max_retries=0, connect_timeout_s=2.0)
    async with FhirClient(config) as client:
        with pytest.raises(FhirTransportError, match="OV-1020"):
            await seed_all(client, generate_cohort(2, 5), truth, data_dir=None)
    assert not truth.exists()
