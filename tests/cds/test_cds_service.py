"""The real CDS service end to end: ``cds.app.create_app`` on a real port, called like an EHR would call it,
reading the live HAPI sandbox (seeded cohort plus adverse events written here with the adapters)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_service_kit import (
    GOLDEN_DRAFTS,
    GOLDEN_PATIENT,
    SELECT,
    SIGN,
    VIEW,
    DuplicateTherapyAssessor,
    MiniEhr,
    Scenario,
    Service,
    cards_by_topic,
    drafts,
    ehr_prefetch,
    hook_body,
    make_settings,
    normalise_uuids,
    post,
    prepare_scenario,
    running_service,
    spec_problems,
)
from sqlalchemy import select

from cds.state import FeedbackRow, StateStore
from hooks import DEFAULT_PREFETCH

GOLDEN = Path(__file__).parent / "golden" / "order_sign_response.json"


@pytest.fixture(scope="module")
def fhir(seeded_sandbox: Any) -> str:
    return str(seeded_sandbox.base_url)


@pytest.fixture(scope="module")
def sc(fhir: str) -> Scenario:
    """Patients and drugs picked from the seeded sandbox, with their prior adverse events recorded."""
    return prepare_scenario(fhir)


@pytest.fixture(scope="module")
def ehr() -> MiniEhr:
    return MiniEhr()


@pytest.fixture
def assessor() -> DuplicateTherapyAssessor:
    return DuplicateTherapyAssessor()


@pytest.fixture
def service(tmp_path: Path, ehr: MiniEhr, assessor: DuplicateTherapyAssessor, fhir: str) -> Iterator[Service]:
    """A fresh app per test: an empty prepared-context cache, so a fetch really goes to the sandbox."""
    with running_service(make_settings(tmp_path, [ehr]), assessor) as svc:
        yield svc


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as c:
        yield c


def answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    doc = response.json()
    assert spec_problems(doc) == []
    return dict(doc)


def sign_body(sc: Scenario, **kwargs: Any) -> dict[str, Any]:
    return hook_body("order-sign", sc.patient, draft_orders=drafts(sc.patient, sc.sign_drugs), **kwargs)


def assert_sign_cards(doc: dict[str, Any], sc: Scenario) -> None:
    """Prior-ADE card for draft-1; duplicate-therapy warnings for draft-1 and draft-2 (the patient is on
    both drugs); nothing for the three neutral drafts."""
    topics = cards_by_topic(doc)
    assert sorted(topics) == ["overprescription", "prior-ade"] and len(doc["cards"]) == 3
    (ade,) = topics["prior-ade"]
    assert ade["indicator"] == "critical"  # the recorded event is CTCAE grade 3
    assert sc.ade_drug.display.casefold() in ade["summary"].casefold()
    assert "Acute kidney injury" in ade["detail"] and "| 3 | 2025-11-03 |" in ade["detail"]
    over = {c["suggestions"][0]["actions"][0]["resourceId"]: c for c in topics["overprescription"]}
    assert sorted(over) == ["MedicationRequest/draft-1", "MedicationRequest/draft-2"]
    dup = over["MedicationRequest/draft-2"]
    assert dup["indicator"] == "warning"
    assert dup["summary"].startswith(f"{sc.dup_drug.display}: likely overprescription")
    assert f"MedicationRequest/{sc.dup_drug.order_id}" in dup["detail"]  # found in the patient's context
    (remove,) = dup["suggestions"]
    assert remove["actions"] == [{
        "type": "delete", "description": f"Remove the draft order for {sc.dup_drug.display}",
        "resourceId": "MedicationRequest/draft-2",
    }]
    assert {r["code"] for r in dup["overrideReasons"]} >= {"benefit-outweighs-risk"}


def test_discovery_advertises_the_three_services(service: Service, client: httpx.Client, ehr: MiniEhr) -> None:
    r = client.get(service.url(), headers=ehr.auth(service.url()))
    assert r.status_code == 200
    doc = r.json()
    by_id = {s["id"]: s for s in doc["services"]}
    hooks = {k: v["hook"] for k, v in by_id.items()}
    assert hooks == {SIGN: "order-sign", SELECT: "order-select", VIEW: "patient-view"}
    for s in doc["services"]:
        assert s["prefetch"] == dict(DEFAULT_PREFETCH)
    assert client.get(service.url()).status_code == 401  # discovery needs the JWT too


def test_order_sign_with_full_prefetch(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario, assessor: DuplicateTherapyAssessor
) -> None:
    body = sign_body(sc, prefetch=ehr_prefetch(fhir, sc.patient))  # no fhirServer: prefetch is all there is
    assert_sign_cards(answer(post(client, ehr, service.url(SIGN), body)), sc)
    assert assessor.calls == [(sc.patient, 5)]


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(("patient", "medications", "conditions", "allergies"), id="adverse-events-fetched"),
        pytest.param(("adverseEvents",), id="patient-context-fetched"),
        pytest.param((), id="everything-fetched"),
    ],
)
def test_order_sign_fetches_missing_prefetch_from_the_fhir_server(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario, sent: tuple[str, ...]
) -> None:
    body = sign_body(sc, prefetch=ehr_prefetch(fhir, sc.patient, sent), fhir_server=fhir)
    # Each time one of the two cards can only come from data the service read itself.
    assert_sign_cards(answer(post(client, ehr, service.url(SIGN), body)), sc)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir"


@pytest.mark.parametrize("fhir_server", [None, "closed-port"])
def test_order_sign_without_a_way_to_fetch_is_412(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario, fhir_server: str | None
) -> None:
    prefetch = ehr_prefetch(fhir, sc.patient, ("patient", "medications"))
    body = sign_body(sc, prefetch=prefetch, fhir_server=closed_port_url() if fhir_server else None)
    r = post(client, ehr, service.url(SIGN), body)
    assert r.status_code == 412, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["code"] == "incomplete"
    assert set(issue["expression"]) == {"prefetch.conditions", "prefetch.allergies", "prefetch.adverseEvents"}


def test_order_select_advises_on_the_selected_order_only(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario
) -> None:
    body = hook_body(
        "order-select", sc.patient, draft_orders=drafts(sc.patient, sc.sign_drugs),
        selections=["MedicationRequest/draft-2"], prefetch=ehr_prefetch(fhir, sc.patient, ("patient",)),
        fhir_server=fhir,
    )
    doc = answer(post(client, ehr, service.url(SELECT), body))
    # draft-1 (the drug with a prior event) is in the bundle but not selected: no card for it yet.
    assert [c["source"]["topic"]["code"] for c in doc["cards"]] == ["overprescription"]
    assert doc["cards"][0]["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-2"


def test_order_sign_grade_2_event_is_info(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario
) -> None:
    pid = sc.info_patient
    body = hook_body("order-sign", pid, draft_orders=drafts(pid, [sc.info_drug.pair]), fhir_server=fhir)
    doc = answer(post(client, ehr, service.url(SIGN), body))
    (card,) = doc["cards"]
    assert card["indicator"] == "info"
    assert card["summary"] == f"Prior Fatigue with {sc.info_drug.display} (worst grade 2)"


def test_patient_view_summarises_events_of_current_drugs(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario
) -> None:
    body = hook_body("patient-view", sc.patient, prefetch=ehr_prefetch(fhir, sc.patient))
    doc = answer(post(client, ehr, service.url(VIEW), body))
    name = sc.ade_drug.display.casefold()
    (card,) = [c for c in cards_by_topic(doc)["prior-ade"] if name in c["summary"].casefold()]
    assert card["indicator"] == "critical" and "Acute kidney injury" in card["detail"]
    assert "overprescription" not in cards_by_topic(doc)  # nothing is being ordered at chart opening

    # The golden patient's only event is for gemcitabine, which she is not on: nothing to say, and said so.
    body = hook_body("patient-view", GOLDEN_PATIENT, fhir_server=fhir)
    assert answer(post(client, ehr, service.url(VIEW), body)) == {"cards": []}


def test_feedback_is_stored_and_counted_per_card_type(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario
) -> None:
    topics = cards_by_topic(answer(post(client, ehr, service.url(SIGN), sign_body(sc, fhir_server=fhir))))
    ade, over = topics["prior-ade"][0], topics["overprescription"][1]
    feedback = {"feedback": [
        {
            "card": over["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-23T10:15:00Z",
            "acceptedSuggestions": [{"id": over["suggestions"][0]["uuid"]}],
        },
        {
            "card": ade["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T10:16:00Z",
            "overrideReason": {"reason": over["overrideReasons"][1], "userComment": "tolerated last cycle"},
        },
    ]}
    url = service.url(SIGN, feedback=True)
    r = post(client, ehr, url, feedback)
    assert r.status_code == 200, r.text
    again = {"feedback": [{**feedback["feedback"][1], "outcomeTimestamp": "2026-11-23T11:00:00Z"}]}
    r = post(client, ehr, url, again, aud=service.url(SIGN))  # some EHRs sign feedback for the service URL
    assert r.status_code == 200, r.text

    store = StateStore(str(service.settings.state_db_url))  # read as another process would
    try:
        assert store.feedback_counts() == {
            f"{SIGN}/overprescription": {"accepted": 1},  # the other warning was ignored: not reported
            f"{SIGN}/prior-ade": {"overridden": 2},
        }
        with store.session() as s:
            rows = {r.card_uuid: r for r in s.scalars(select(FeedbackRow))}
        assert rows[over["uuid"]].accepted_suggestions == [over["suggestions"][0]["uuid"]]
        assert rows[ade["uuid"]].override_code == over["overrideReasons"][1]["code"]
        assert rows[ade["uuid"]].user_comment == "tolerated last cycle"
    finally:
        store.close()


def test_order_sign_answer_matches_golden(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario
) -> None:
    """One full order-sign answer, exact apart from uuids (ONCOVIGIL_UPDATE_GOLDEN=1 rewrites the file)."""
    body = hook_body(
        "order-sign", GOLDEN_PATIENT, draft_orders=drafts(GOLDEN_PATIENT, GOLDEN_DRAFTS),
        prefetch=ehr_prefetch(fhir, GOLDEN_PATIENT),
    )
    doc = normalise_uuids(answer(post(client, ehr, service.url(SIGN), body)))
    if os.environ.get("ONCOVIGIL_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        pytest.fail(f"{GOLDEN} rewritten: review its diff, then run again without ONCOVIGIL_UPDATE_GOLDEN")
    assert doc == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_same_hook_instance_gives_same_card_ids(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario
) -> None:
    """A retried call (same hookInstance) shows the same card uuids, so late feedback still matches."""
    body = sign_body(sc, fhir_server=fhir)
    first = answer(post(client, ehr, service.url(SIGN), body))
    second = answer(post(client, ehr, service.url(SIGN), body))
    assert len(first["cards"]) == 3
    assert [c["uuid"] for c in first["cards"]] == [c["uuid"] for c in second["cards"]]


@pytest.mark.parametrize(
    "bad", [{"id": "has spaces"}, {"id": ["draft-1"]}, {"medicationCodeableConcept": {"coding": True}}]
)
def test_malformed_draft_orders_are_400(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario, bad: dict[str, Any]
) -> None:
    """Found by fuzzing the real service: these were 500s (invalid card built, TypeError in the mapping)."""
    body = sign_body(sc, prefetch=ehr_prefetch(fhir, sc.patient))
    body["context"]["draftOrders"]["entry"][0]["resource"].update(bad)
    r = post(client, ehr, service.url(SIGN), body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "OV-3020" and "draftOrders" in r.json()["message"]


def test_draft_order_without_id_is_400(
    service: Service, client: httpx.Client, ehr: MiniEhr, fhir: str, sc: Scenario
) -> None:
    body = sign_body(sc, prefetch=ehr_prefetch(fhir, sc.patient))
    del body["context"]["draftOrders"]["entry"][1]["resource"]["id"]
    r = post(client, ehr, service.url(SIGN), body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "OV-3020" and "draftOrders" in r.json()["message"]
