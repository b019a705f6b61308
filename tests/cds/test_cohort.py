"""The synthetic cohort: deterministic, its truth points at the right text, its resources are valid R4."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds.cohort import (
    SYMPTOMS,
    TRUTH_FILES,
    Cohort,
    generate_cohort,
    load_ctcae_terms,
    read_jsonl,
    write_ndjson,
    write_truth,
)
from cds.cohort.codes import DRUGS
from cds.cohort.lexicon import EVENT_SURFACES, SYMPTOM_ABSENT, SYMPTOM_PRESENT
from cds.errors import CohortError

NOTE_KEYS = {"note_id", "patient_id", "date", "kind", "text", "ades", "toxicities", "combinations"}
ADE_KEYS = {
    "drug",
    "rxnorm",
    "event",
    "ctcae_term",
    "meddra_code",
    "grade",
    "negated",
    "drug_span",
    "event_span",
    "medication_request_id",
}
VISIT_KEYS = {"visit_id", "patient", "candidates", "prescribed", "overprescribed"}
VISIT_PATIENT_KEYS = {"age", "sex", "conditions", "previous_medications", "allergies", "history"}


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(50, 7)


@pytest.fixture(scope="module")
def notes(cohort: Cohort) -> list[dict[str, Any]]:
    return [n.to_json() for n in cohort.notes]


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _write_all(cohort: Cohort, directory: Path) -> dict[str, bytes]:
    write_truth(cohort, directory)
    write_ndjson(cohort, directory / "fhir")
    return _files(directory)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first = _write_all(generate_cohort(8, 11), tmp_path / "a")
    second = _write_all(generate_cohort(8, 11), tmp_path / "b")
    other = _write_all(generate_cohort(8, 12), tmp_path / "c")
    assert set(TRUTH_FILES) <= set(first)
    assert "fhir/DocumentReference.ndjson" in first
    assert first == second
    assert other["notes.jsonl"] != first["notes.jsonl"]
    assert other["fhir/MedicationRequest.ndjson"] != first["fhir/MedicationRequest.ndjson"]


def test_a_small_cohort_is_the_prefix_of_a_larger_one() -> None:
    small, large = generate_cohort(3, 7), generate_cohort(6, 7)
    small_notes = [n.to_json() for n in small.notes]
    assert small_notes == [n.to_json() for n in large.notes if n.patient_id <= "ov-pat-0003"]


def test_bad_size_is_a_cohort_error() -> None:
    with pytest.raises(CohortError, match="OV-0041"):
        generate_cohort(0, 7)


def test_notes_follow_the_truth_contract(notes: list[dict[str, Any]], cohort: Cohort) -> None:
    doc_ids = {r["id"] for r in cohort.resources if r["resourceType"] == "DocumentReference"}
    assert {n["note_id"] for n in notes} == doc_ids
    assert {n["kind"] for n in notes} == {"consult", "progress", "radiotherapy"}
    for note in notes:
        assert set(note) >= NOTE_KEYS
        assert re.fullmatch(r"ov-note-\d{4}-\d{2}", note["note_id"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", note["date"])
        assert list(note["toxicities"]) == list(SYMPTOMS)
        for ade in note["ades"]:
            assert set(ade) >= ADE_KEYS


def test_ade_spans_point_at_the_drug_and_the_event(notes: list[dict[str, Any]], cohort: Cohort) -> None:
    ctcae = load_ctcae_terms()
    orders = {r["id"]: r for r in cohort.resources if r["resourceType"] == "MedicationRequest"}
    negated = 0
    for note in notes:
        text = note["text"]
        for ade in note["ades"]:
            drug = DRUGS[ade["drug"]]
            surface = text[slice(*ade["drug_span"])]
            assert surface in {drug.name, drug.name.capitalize(), *drug.brands}, (note["note_id"], surface)
            assert ade["rxnorm"] == drug.rxnorm
            assert text[slice(*ade["event_span"])] == ade["event"]
            assert ade["event"].lower() in {s.lower() for s in EVENT_SURFACES[ade["ctcae_term"]]}
            assert ctcae[ade["ctcae_term"]].meddra_code == ade["meddra_code"]
            if ade["negated"]:
                negated += 1
                assert ade["grade"] is None
            elif ade["grade"] is not None:
                assert 1 <= ade["grade"] <= ctcae[ade["ctcae_term"]].max_grade
            mr_id = ade["medication_request_id"]
            if mr_id is not None:
                order = orders[mr_id]
                assert order["subject"]["reference"] == f"Patient/{note['patient_id']}"
                assert order["medicationCodeableConcept"]["coding"][0]["code"] == drug.rxnorm
                assert order["authoredOn"][:10] < note["date"]
    assert negated > 20


def test_grades_and_drug_attributions_come_in_many_phrasings(notes: list[dict[str, Any]]) -> None:
    shapes = set()
    for note in notes:
        text = note["text"]
        for ade in note["ades"]:
            spans = sorted([tuple(ade["drug_span"]), tuple(ade["event_span"])])
            lo, hi = spans[0][0], spans[1][1]
            start = text.rfind(". ", 0, lo) + 2 if text.rfind(". ", 0, lo) >= 0 else 0
            sentence = text[max(start, text.rfind("\n", 0, lo) + 1) : text.find(".", hi) + 1]
            shape = sentence.replace(text[slice(*ade["drug_span"])], "D").replace(ade["event"], "E")
            shapes.add(re.sub(r"\d", "N", shape))
    assert len(shapes) > 60
    joined = "\n".join(n["text"] for n in notes)
    for phrasing in ("grade 2", "G3", "severe", "mild", "likely secondary to", "denies", "no evidence of"):
        assert phrasing.lower() in joined.lower(), phrasing


def test_toxicity_truth_covers_all_twelve_symptoms(notes: list[dict[str, Any]]) -> None:
    statuses: dict[str, Counter[str]] = {s: Counter() for s in SYMPTOMS}
    for note in notes:
        text = note["text"]
        for symptom, value in note["toxicities"].items():
            statuses[symptom][value["status"]] += 1
            if value["status"] == "not_mentioned":
                assert value["grade"] is None and value["span"] is None
                continue
            mentioned = text[slice(*value["span"])].lower()
            surfaces = {*SYMPTOM_PRESENT[symptom], *SYMPTOM_ABSENT[symptom]}
            surfaces |= {s.lower() for s in EVENT_SURFACES.get(symptom.capitalize(), ())}
            assert mentioned in surfaces, (note["note_id"], symptom, mentioned)
            if value["status"] == "absent":
                assert value["grade"] is None
    for symptom, counter in statuses.items():
        assert counter["present"] > 0 and counter["absent"] > 0, (symptom, counter)
    rt_notes = [n for n in notes if n["kind"] == "radiotherapy"]
    assert rt_notes and any(
        sum(v["status"] != "not_mentioned" for v in n["toxicities"].values()) >= 6 for n in rt_notes
    )


def test_combination_sentences_name_their_drugs(notes: list[dict[str, Any]]) -> None:
    labels: Counter[str] = Counter()
    for note in notes:
        text = note["text"]
        for combo in note["combinations"]:
            labels[combo["label"]] += 1
            assert len(combo["drugs"]) >= 2
            start, end = combo["sentence_span"]
            for drug, (s, e) in zip(combo["drugs"], combo["drug_spans"], strict=True):
                assert start <= s < e <= end
                info = DRUGS[drug]
                assert text[s:e] in {drug, drug.capitalize(), *info.brands}
    assert labels["POS"] and labels["COMB"] and labels["NEG"]


def test_overprescriptions_are_real_and_explained(cohort: Cohort) -> None:
    orders = {r["id"]: r for r in cohort.resources if r["resourceType"] == "MedicationRequest"}
    reasons = Counter(o.reason for o in cohort.overprescriptions)
    assert set(reasons) == {"duplicate_therapy", "no_indication", "prior_serious_ade"}
    for over in cohort.overprescriptions:
        order = orders[over.medication_request_id]
        assert order["medicationCodeableConcept"]["coding"][0]["code"] == over.rxnorm == DRUGS[over.drug].rxnorm
        assert order["subject"]["reference"] == f"Patient/{over.patient_id}"
        mine = [o for o in orders.values() if o["subject"]["reference"] == f"Patient/{over.patient_id}"]
        if over.reason == "duplicate_therapy":
            same_class = {
                o["medicationCodeableConcept"]["text"]
                for o in mine
                if o["id"] != order["id"]
                and o["authoredOn"] <= order["authoredOn"]
                and DRUGS[o["medicationCodeableConcept"]["text"]].drug_class == DRUGS[over.drug].drug_class
            }
            assert same_class - {over.drug}
        elif over.reason == "no_indication":
            labels = {
                c["code"]["text"]
                for c in cohort.resources
                if c["resourceType"] == "Condition" and c["subject"] == order["subject"]
            }
            # A HER2-positive tumour is the one trastuzumab would be right for: it gets the lymphoma drug.
            her2_positive = "breast cancer, HER2-positive" in labels
            assert over.drug == ("rituximab" if her2_positive else "trastuzumab")
        else:
            serious = [
                a
                for n in cohort.notes
                if n.patient_id == over.patient_id and n.date <= over.date
                for a in n.ades
                if a.drug == over.drug and not a.negated and (a.grade or 0) >= 3
            ]
            assert serious


def test_small_cohort_has_every_overprescription_reason() -> None:
    small = generate_cohort(8, 11)
    assert {o.reason for o in small.overprescriptions} == {"duplicate_therapy", "no_indication", "prior_serious_ade"}


def test_visits_use_the_recommender_format(cohort: Cohort, tmp_path: Path) -> None:
    write_truth(cohort, tmp_path)
    visits = read_jsonl(tmp_path / "visits.jsonl")
    flagged = {(v["visit_id"], d) for v in visits for d in v["overprescribed"]}
    expected = {(o.encounter_id, o.drug) for o in cohort.overprescriptions}
    assert flagged == expected
    for visit in visits:
        assert set(visit) >= VISIT_KEYS and set(visit["patient"]) >= VISIT_PATIENT_KEYS
        assert set(visit["prescribed"]) <= set(visit["candidates"])
        assert set(visit["overprescribed"]) <= set(visit["prescribed"])
        assert len(visit["candidates"]) > len(visit["prescribed"])
        assert 30 <= visit["patient"]["age"] <= 90
        assert visit["patient"]["conditions"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["patients"] == 50
    assert manifest["counts"] == cohort.counts()
    assert manifest["generator_version"]
    over = read_jsonl(tmp_path / "overprescriptions.jsonl")
    assert {"patient_id", "medication_request_id", "drug", "rxnorm", "reason"} <= set(over[0])


def test_resources_are_valid_fhir_r4(cohort: Cohort) -> None:
    texts = {n.note_id: n.text for n in cohort.notes}
    ids: set[tuple[str, str]] = set()
    for resource in cohort.resources:
        kind = resource["resourceType"]
        model = get_fhir_model_class(kind).model_validate(resource)
        assert model.model_dump()["id"] == resource["id"] and not resource["id"].isdigit()
        assert (kind, resource["id"]) not in ids
        ids.add((kind, resource["id"]))
        if kind == "DocumentReference":
            attachment = resource["content"][0]["attachment"]
            assert attachment["contentType"] == "text/plain; charset=utf-8"
            assert resource["type"]["coding"][0]["system"] == "http://loinc.org"
            assert resource["status"] == "current"
            assert base64.b64decode(attachment["data"]).decode("utf-8") == texts[resource["id"]]
        if kind == "MedicationRequest":
            coding = resource["medicationCodeableConcept"]["coding"][0]
            assert coding["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
    references = {
        tuple(ref.split("/", 1))
        for r in cohort.resources
        for ref in re.findall(r'"reference": "([A-Za-z]+/[^"]+)"', json.dumps(r))
    }
    assert references <= ids


def test_patient_names_are_clearly_synthetic(cohort: Cohort) -> None:
    patients = [r for r in cohort.resources if r["resourceType"] == "Patient"]
    assert [p["id"] for p in patients] == [f"ov-pat-{i:04d}" for i in range(1, 51)]
    for patient in patients:
        assert patient["meta"]["tag"][0]["code"] == "synthetic"
        assert patient["identifier"][0]["value"].startswith("SYN-")


@pytest.mark.parametrize("seed", [1, 7, 11, 12])
def test_two_patients_already_include_radiotherapy_notes(seed: int) -> None:
    kinds = {n.kind for n in generate_cohort(2, seed).notes}
    assert kinds == {"consult", "progress", "radiotherapy"}
