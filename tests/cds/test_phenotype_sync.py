"""Phenotype write-back through the real sync against the live sandbox: a pathology note becomes mCODE-aligned
Observations (stage group with TNM components, ER, PR, HER2) and an unconfirmed primary cancer Condition, with
Provenance; a re-run writes nothing new; the recommender's patient summary carries the stored phenotype, while
the patient context (indications) never reads our own Condition."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters import FhirClient, FhirClientConfig, Note, PatientContext, fetch_patient_context
from cds.assessor import stored_phenotype
from cds.extraction import LoadedExtractors
from cds.formulary import default_formulary
from cds.phenotype_map import phenotype_inputs, primary_cancer_input, summary_phrases
from cds.recommender_assessor import patient_summary
from cds.state import StateStore
from cds.sync import SyncJob, SyncOptions
from models.phenotype import Phenotype, PhenotypeExtractor, PhenotypeField
from models.phenotype.build import build_phenotype_dir
from models.registry import RuntimeConfig
from models.runtime import CPU

REPO = Path(__file__).resolve().parents[2]
PATIENT = "ov-pat-0001"
NOTE_ID = "ov-test-phenotype-note"
TEXT = (
    "SURGICAL PATHOLOGY REPORT\nSpecimen: left breast, resection.\nDiagnosis: invasive ductal carcinoma, grade 2.\n"
    "Tumor size: 2.1 cm.\nPathologic stage: pT2 N1 M0.\nStage group: stage IIB.\n"
    "Biomarkers: ER positive (90%), PR negative, HER2 3+.\n"
)
MODEL = ("oncovigil-phenotype", "phenotype-extractor.v1@1")


def _note(text: str = TEXT, patient: str | None = PATIENT) -> Note:
    return Note(
        id=NOTE_ID, patient_id=patient, encounter_id=None, date=datetime(2026, 5, 4), type_code="60567-5",
        type_display="Pathology report", status="current", text=text, version_id="1", last_updated=None,
    )  # fmt: skip


def _field(name: str, value: str, confidence: float = 0.9) -> PhenotypeField:
    return PhenotypeField(name, value, value, (0, 1), confidence)


def test_only_notes_that_name_a_cancer_become_observations_and_weak_values_are_not_written() -> None:
    stray = Phenotype((_field("er", "positive"),))
    inputs, rows = phenotype_inputs(_note(), stray, MODEL)
    assert inputs == [] and len(rows) == 1  # stored for the summary, not written to the EHR
    phenotype = Phenotype(
        (
            _field("site", "breast"),
            _field("tnm", "T2N1M0"),
            _field("stage_group", "IIB"),
            _field("her2", "equivocal"),
            _field("pr", "negative", confidence=0.3),
            _field("pdl1", "high"),
        )
    )
    inputs, _ = phenotype_inputs(_note(), phenotype, MODEL)
    by_text = {i.code_text: i for i in inputs}
    assert set(by_text) == {"Cancer stage group", "HER2 status", "PD-L1 expression (TPS or CPS category)"}
    stage = by_text["Cancer stage group"]
    assert stage.code is not None and stage.code[1] == "21908-9" and stage.value_text == "Stage IIB"
    assert [(c.code[1], c.value_text) for c in stage.components] == [
        ("21905-5", "T2"),
        ("21906-3", "N1"),
        ("21907-1", "M0"),
    ]
    assert by_text["HER2 status"].value_coding == ("http://snomed.info/sct", "42425007", "Equivocal (qualifier value)")
    pdl1 = by_text["PD-L1 expression (TPS or CPS category)"]
    assert pdl1.code is None  # LOINC's PD-L1 codes name an antibody clone the note does not state
    assert [(c.code[1], c.value_coding) for c in pdl1.components] == [
        ("48018-6", ("http://www.genenames.org/geneId", "HGNC:17635", "CD274"))
    ]
    # the same fact of the same note always has the same key: the write is idempotent
    assert [i.key for i in inputs] == [i.key for i in phenotype_inputs(_note(), phenotype, MODEL)[0]]


def test_driver_mutations_are_genetic_variant_assessments_of_their_gene() -> None:
    phenotype = Phenotype((_field("diagnosis", "non-small cell lung cancer"), _field("egfr", "positive"),
                           _field("alk", "negative"), _field("kras", "negative")))  # fmt: skip
    inputs, _ = phenotype_inputs(_note(), phenotype, MODEL)
    genes = {i.components[0].value_coding[1]: i for i in inputs if i.components and i.components[0].value_coding}
    assert set(genes) == {"HGNC:3236", "HGNC:427", "HGNC:6407"}
    assert {i.code[1] for i in genes.values() if i.code} == {"69548-6"}
    assert genes["HGNC:3236"].value_coding == ("http://snomed.info/sct", "10828004", "Positive (qualifier value)")
    assert genes["HGNC:427"].value_coding == ("http://snomed.info/sct", "260385009", "Negative (qualifier value)")


def _row(**fields: str) -> dict[str, Any]:
    return {name: {"value": value, "confidence": 0.9} for name, value in fields.items()}


def test_primary_cancer_takes_the_newest_diagnosis_and_only_its_own_stage() -> None:
    rows = [  # newest note first
        ("n3", _row(er="positive")),
        ("n2", _row(diagnosis="breast cancer", site="breast", laterality="left", histology="ductal carcinoma")),
        ("n1", _row(diagnosis="colon cancer", stage_group="IIIB")),
        ("n0", _row(diagnosis="breast cancer", stage_group="IIA")),
    ]
    found = primary_cancer_input(PATIENT, rows, MODEL)
    assert found is not None
    assert found.code == ("http://snomed.info/sct", "254837009", "Malignant neoplasm of breast (disorder)")
    assert (found.body_site_text, found.histology_text, found.stage_text) == (
        "left breast", "ductal carcinoma", "Stage IIA",
    )  # fmt: skip
    assert found.evidence_note_ids == ("n0", "n2")  # the colon cancer's stage IIIB did not leak in
    reordered = primary_cancer_input(PATIENT, list(reversed(rows[:2])) + rows[2:], MODEL)
    assert reordered is not None and reordered.key == found.key
    weak = [("n1", {"diagnosis": {"value": "breast cancer", "confidence": 0.2}})]
    assert primary_cancer_input(PATIENT, weak, MODEL) is None
    assert primary_cancer_input(PATIENT, [("n3", _row(er="positive"))], MODEL) is None


def test_summary_phrases_feed_the_recommender_history() -> None:
    newest = {"diagnosis": {"value": "breast cancer"}, "stage_group": {"value": "IIIA"}, "her2": {"value": "positive"}}
    older = {"stage_group": {"value": "IIA"}, "er": {"value": "negative"}, "pdl1": {"value": "high"}}
    phrases = summary_phrases([newest, older])
    assert phrases == ["breast cancer, stage IIIA", "ER-negative", "HER2-positive", "PD-L1 high"]
    context = PatientContext(patient_id=PATIENT, age=61, sex="female")
    summary = patient_summary(context, [], [], default_formulary(), phrases)
    assert summary.history.startswith("tumour phenotype: breast cancer, stage IIIA, ER-negative, HER2-positive")
    assert summary.conditions == ()  # the indication rules never see phenotype phrases


@pytest.fixture(scope="module")
def extractor(tmp_path_factory: pytest.TempPathFactory) -> PhenotypeExtractor:
    model_dir = tmp_path_factory.mktemp("phenotype-sync") / "phenotype"
    build_phenotype_dir(REPO / "models" / "artifacts" / "phenotype", model_dir, int8=False, threads=1)
    return PhenotypeExtractor.load(model_dir, RuntimeConfig(providers=(CPU,), threads=1))


async def _put_note(client: FhirClient, text: str = TEXT, note_id: str = NOTE_ID) -> datetime:
    document = {
        "resourceType": "DocumentReference",
        "id": note_id,
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60567-5", "display": "Pathology report"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "date": "2026-05-04T10:00:00Z",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": document, "request": {"method": "PUT", "url": f"DocumentReference/{note_id}"}}],
    }
    await client.transaction(bundle)
    stored = await client.read("DocumentReference", note_id)
    return datetime.fromisoformat(stored["meta"]["lastUpdated"].replace("Z", "+00:00"))


async def _observations(client: FhirClient, note_id: str = NOTE_ID) -> list[dict[str, Any]]:
    params = [("derived-from", f"DocumentReference/{note_id}")]
    return [r async for r in client.search("Observation", params, fresh=True)]


async def _provenance_count(client: FhirClient, observation_id: str) -> int:
    return await client.count("Provenance", [("target", f"Observation/{observation_id}")])


def test_sync_writes_phenotype_observations_once(
    seeded_sandbox: Any, extractor: PhenotypeExtractor, tmp_path: Path
) -> None:
    loaded = LoadedExtractors({"phenotype": extractor}, {"phenotype": "phenotype-extractor.v1@1"}, [])

    async def go() -> tuple[Any, ...]:
        config = FhirClientConfig(base_url=seeded_sandbox.base_url, read_timeout_s=120.0)
        async with FhirClient(config) as client:
            updated = await _put_note(client)
            options = SyncOptions(since=updated - timedelta(seconds=1))
            first_store = StateStore(f"sqlite:///{tmp_path}/first.db")
            first = await SyncJob(first_store, client, loaded, options).run()
            after_first = await _observations(client)
            condition_first = [c async for c in client.search("Condition", [("subject", f"Patient/{PATIENT}")],
                                                              fresh=True) if c["id"].startswith("ov-pcc-")]
            # a fresh state store forgets what was processed: the note is read again and written again
            second_store = StateStore(f"sqlite:///{tmp_path}/second.db")
            second = await SyncJob(second_store, client, loaded, options).run()
            after_second = await _observations(client)
            provenance = {o["id"]: await _provenance_count(client, o["id"]) for o in after_second}
            phrases = stored_phenotype(first_store)(PATIENT)
            conditions = [
                c async for c in client.search("Condition", [("subject", f"Patient/{PATIENT}")], fresh=True)
                if c["id"].startswith("ov-pcc-")
            ]
            context = await fetch_patient_context(client, PATIENT)
            first_store.close()
            second_store.close()
            return first, second, after_first, after_second, provenance, phrases, conditions, condition_first, context

    first, second, after_first, after_second, provenance, phrases, conditions, condition_first, context = asyncio.run(
        go()
    )
    assert first.status == "ok" and second.status == "ok", (first.errors, second.errors)
    by_code = {o["code"].get("coding", [{}])[0].get("code"): o for o in after_first}
    assert set(by_code) == {"21908-9", "16112-5", "16113-3", "48676-1"}
    stage = by_code["21908-9"]
    assert stage["valueCodeableConcept"]["text"] == "Stage IIB" and stage["status"] == "preliminary"
    assert [c["valueCodeableConcept"]["text"] for c in stage["component"]] == ["T2", "N1", "M0"]
    assert stage["subject"]["reference"] == f"Patient/{PATIENT}"
    assert by_code["16112-5"]["valueCodeableConcept"]["coding"][0]["code"] == "10828004"  # ER positive
    assert by_code["16113-3"]["valueCodeableConcept"]["coding"][0]["code"] == "260385009"  # PR negative
    assert by_code["48676-1"]["valueCodeableConcept"]["text"] == "positive"
    assert by_code["48676-1"]["note"][0]["text"].endswith("HER2 3+")
    # the re-run found everything in place: same resources, no new versions, one Provenance each
    assert second.counts.get("Observation_created", 0) == 0
    assert sorted(o["id"] for o in after_second) == sorted(o["id"] for o in after_first)
    assert all(o["meta"]["versionId"] == "1" for o in after_second)
    assert set(provenance.values()) == {1}
    assert phrases[:2] == ["breast cancer, stage IIB", "ER-positive"] and "HER2-positive" in phrases
    # one unconfirmed primary cancer Condition of ours, replaced (not duplicated) by the re-run
    assert len(conditions) == 1, conditions
    (condition,) = conditions
    assert condition["verificationStatus"]["coding"][0]["code"] == "unconfirmed"
    assert condition["code"]["coding"][0]["code"] == "254837009"
    assert condition["stage"][0]["summary"]["text"] == "Stage IIB"
    assert condition["bodySite"][0]["text"] == "left breast"
    assert condition["evidence"][0]["detail"] == [{"reference": f"DocumentReference/{NOTE_ID}"}]
    # another module's sync may have written this seeded patient's Condition before: the re-run leaves it as is
    assert [c["meta"]["versionId"] for c in condition_first] == [condition["meta"]["versionId"]]
    assert second.counts.get("Condition_created", 0) == 0
    assert condition["id"] not in {c.id for c in context.conditions}  # indications are the clinician's only


def test_bulk_export_diagnosis_is_scored_against_the_patients_conditions(
    extractor: PhenotypeExtractor, tmp_path: Path
) -> None:
    import json

    from cds.model_task_phenotype import condition_label, synthea_diagnosis

    def document(doc_id: str, patient: str, text: str) -> dict[str, Any]:
        attachment = {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}
        return {
            "resourceType": "DocumentReference",
            "id": doc_id,
            "status": "current",
            "subject": {"reference": f"Patient/{patient}"},
            "date": "2024-02-01T10:00:00Z",
            "content": [{"attachment": attachment}],
        }

    docs = [
        document(
            "d1", "p1", "Oncology consult. Referred for newly diagnosed NSCLC. Biopsy of the RUL: adenocarcinoma."
        ),
        document("d2", "p2", "Annual physical. Blood pressure well controlled on lisinopril."),
    ]
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "254637007"}]}
    code["coding"][0]["display"] = "Non-small cell lung cancer (disorder)"
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": code,
        "onsetDateTime": "2024-01-15T00:00:00Z",
    }
    (tmp_path / "DocumentReference.000.ndjson").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "Condition.000.ndjson").write_text(json.dumps(condition) + "\n")
    result = synthea_diagnosis(extractor, tmp_path)
    assert result["notes"] == 2 and result["notes_with_cancer"] == 1
    assert result["diagnosis"] | {} == {**result["diagnosis"], "tp": 1, "fp": 0, "fn": 0, "exact_match": 1.0}
    assert condition_label("Suspected lung cancer (situation)") is None
    assert condition_label("Chronic obstructive lung disease (disorder)") is None
    assert condition_label("Malignant neoplasm of breast (disorder)") == "breast cancer"


def test_an_amended_note_withdraws_the_observation_of_a_field_it_no_longer_states(
    seeded_sandbox: Any, extractor: PhenotypeExtractor, tmp_path: Path
) -> None:
    """The pathology report is amended without its HER2 result: that Observation is set to entered-in-error
    (with a NULLIFY Provenance), the fields still stated keep their version, and a re-run changes nothing."""
    loaded = LoadedExtractors({"phenotype": extractor}, {"phenotype": "phenotype-extractor.v1@1"}, [])
    note_id = f"{NOTE_ID}-amended"
    amended = TEXT.replace(", HER2 3+", "")
    assert amended != TEXT

    async def go() -> tuple[list[Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        config = FhirClientConfig(base_url=seeded_sandbox.base_url, read_timeout_s=120.0)
        async with FhirClient(config) as client:
            store = StateStore(f"sqlite:///{tmp_path}/state.db")
            updated = await _put_note(client, TEXT, note_id)
            options = SyncOptions(since=updated - timedelta(seconds=1))
            reports = [await SyncJob(store, client, loaded, options).run()]
            before = await _observations(client, note_id)
            await _put_note(client, amended, note_id)
            reports.append(await SyncJob(store, client, loaded, options).run())
            after = await _observations(client, note_id)
            reports.append(await SyncJob(store, client, loaded, options).run())
            her2 = next(o for o in after if o["code"]["coding"][0]["code"] == "48676-1")
            provenances = [p async for p in client.search("Provenance", [("target", f"Observation/{her2['id']}")])]
            store.close()
            return reports, before, after, provenances

    reports, before, after, provenances = asyncio.run(go())
    assert all(r.status == "ok" for r in reports), [r.errors for r in reports]
    assert reports[1].counts["notes_processed"] == 1 and reports[1].counts["Observation_withdrawn"] == 1
    assert reports[2].counts.get("notes_processed", 0) == 0 and reports[2].counts.get("Observation_withdrawn", 0) == 0
    status = {o["code"]["coding"][0]["code"]: (o["status"], o["meta"]["versionId"]) for o in after}
    assert status.pop("48676-1") == ("entered-in-error", "2")
    assert len(before) == 4 and status == {code: ("preliminary", "1") for code in ("21908-9", "16112-5", "16113-3")}
    assert {c["code"] for p in provenances for c in p["activity"]["coding"]} == {"CREATE", "NULLIFY"}
