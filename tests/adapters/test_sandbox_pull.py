"""Incremental pulls against the HAPI sandbox: exact sets across pages, only the new ones the second time."""

from __future__ import annotations

import pytest
from adapters_testkit import b64, medication, note, order, patient

from adapters import FhirClient, PullStats, check_capabilities, load_resources, pull_notes, pull_orders

pytestmark = pytest.mark.sandbox


async def test_server_has_what_we_need(fhir: FhirClient) -> None:
    report = await check_capabilities(fhir)
    assert report.ok and report.fhir_version.startswith("4.0.")


async def test_notes_pull_is_exact_across_pages_then_incremental(fhir: FhirClient, run_id: str) -> None:
    pid = f"{run_id}-pat"
    expected = {f"{run_id}-n{i:02d}": f"Day {i}: grade {1 + i % 3} nausea after cisplatin." for i in range(34)}
    seed = [patient(pid)] + [note(nid, pid, text) for nid, text in expected.items()]
    # One note of each kind the mapping must handle, and four it must skip with a reason.
    expected[f"{run_id}-html"] = "Assessment\n\nFièvre & frissons."
    seed.append(
        note(
            f"{run_id}-html",
            pid,
            "<html><body><h2>Assessment</h2><p>Fièvre &amp; frissons.</p></body></html>",
            content_type="text/html; charset=ISO-8859-1",
            encoding="latin-1",
        )
    )
    binary = {
        "resourceType": "Binary",
        "id": f"{run_id}-bin",
        "contentType": "text/plain; charset=utf-8",
        "data": b64("Binary-held note: mucositis grade 2."),
    }
    seed.append(binary)
    expected[f"{run_id}-url"] = "Binary-held note: mucositis grade 2."
    seed.append(note(f"{run_id}-url", pid, "", url=f"Binary/{run_id}-bin"))
    expected[f"{run_id}-abs"] = expected[f"{run_id}-url"]
    seed.append(note(f"{run_id}-abs", pid, "", url=f"{fhir.config.base}/Binary/{run_id}-bin"))
    seed += [
        note(f"{run_id}-old1", pid, "older version", status="superseded"),
        note(f"{run_id}-old2", pid, "older version", status="superseded"),
        note(f"{run_id}-err", pid, "wrong patient", doc_status="entered-in-error"),
        note(f"{run_id}-pdf", pid, "%PDF-1.4", content_type="application/pdf"),
    ]
    await load_resources(fhir, seed)

    stats = PullStats()
    scope = [("patient", f"Patient/{pid}")]
    notes = [n async for n in pull_notes(fhir, None, stats=stats, params=scope)]
    assert sorted(n.id for n in notes) == sorted(expected)  # exactly the seeded notes, each once
    assert {n.id: n.text for n in notes} == expected
    assert stats.pages >= 4 and fhir.config.page_size == 10
    assert stats.skipped == {
        "status:superseded": 2,
        "status:entered-in-error": 1,
        "content-type:application/pdf": 1,
    }
    assert all(n.patient_id == pid and n.is_current for n in notes)
    watermark = stats.watermark
    assert watermark is not None and watermark == max(n.last_updated for n in notes if n.last_updated)

    # New writes after the watermark: three new notes and a new version of an old one.
    changed = f"{run_id}-n05"
    later = [note(f"{run_id}-new{i}", pid, f"New note {i}: rash grade 1.") for i in range(3)]
    later.append(note(changed, pid, "Corrected: grade 3 nausea after cisplatin."))
    await load_resources(fhir, later)
    again = PullStats()
    fresh = [n async for n in pull_notes(fhir, watermark, stats=again, params=scope)]
    assert sorted(n.id for n in fresh) == sorted([*(r["id"] for r in later)])
    assert next(n for n in fresh if n.id == changed).version_id == "2"
    assert again.watermark is not None and again.watermark > watermark

    nothing = [n async for n in pull_notes(fhir, again.watermark, params=scope)]
    assert nothing == []


async def test_orders_pull_is_exact_across_pages_then_incremental(fhir: FhirClient, run_id: str) -> None:
    pid = f"{run_id}-pat"
    med = medication(f"{run_id}-med", "1736854", "cisplatin 50 MG Injection", "Cisplatin")
    seed = [patient(pid), med]
    expected: dict[str, tuple[str, str]] = {}
    for i in range(35):
        oid = f"{run_id}-o{i:02d}"
        if i % 5 == 0:
            seed.append(order(oid, pid, "", "", medication_id=med["id"]))
            expected[oid] = ("1736854", "cisplatin")
        else:
            seed.append(order(oid, pid, "583214", "PACLitaxel 100 MG Injection", status="stopped"))
            expected[oid] = ("583214", "paclitaxel")
    await load_resources(fhir, seed)

    stats = PullStats()
    scope = [("patient", f"Patient/{pid}")]
    orders = [o async for o in pull_orders(fhir, None, stats=stats, params=scope)]
    assert sorted(o.id for o in orders) == sorted(expected)
    assert {o.id: (o.rxnorm_code, o.ingredient) for o in orders} == expected
    assert stats.pages >= 4
    assert {o.medication_id for o in orders if o.rxnorm_code == "1736854"} == {med["id"]}

    new = [order(f"{run_id}-late{i}", pid, "583214", "PACLitaxel 100 MG Injection") for i in range(2)]
    await load_resources(fhir, new)
    fresh = [o async for o in pull_orders(fhir, stats.watermark, params=scope)]
    assert sorted(o.id for o in fresh) == sorted(r["id"] for r in new)
