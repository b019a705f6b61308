"""Property-based fuzzing of order-sign against the REAL service (``cds.app``, real decisions, the live
sandbox behind ``fhirServer``): whatever the EHR sends, the answer is 200, 400 or 412, never a 5xx, and
every 200 follows the card rules."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_service_kit import (
    SIGN,
    MiniEhr,
    Scenario,
    Service,
    drafts,
    ehr_prefetch,
    hook_body,
    make_settings,
    post,
    prepare_scenario,
    running_service,
    spec_problems,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.assessor import build_assessor

FUZZ = settings(
    max_examples=int(os.environ.get("ONCOVIGIL_FUZZ_EXAMPLES", "60")),  # a longer hunt: set it to 1000
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30) | st.sampled_from(["draft", "active", "MedicationRequest", "Patient/ov-pat-0001", "3002"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def ehr() -> MiniEhr:
    return MiniEhr()


@pytest.fixture(scope="module")
def sc(seeded_sandbox: Any) -> Scenario:
    return prepare_scenario(seeded_sandbox.base_url)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, ehr: MiniEhr, sc: Scenario) -> Iterator[Service]:
    # the production deadline (4 s): a mutated body must not make the service hang past it either
    folder = tmp_path_factory.mktemp("fuzz")
    # The assessor the composition root builds (the overprescription rules, no recommender model: a model
    # would only score the drafts that the rules' parsing and formulary lookups have already read).
    settings_ = make_settings(folder, [ehr], cds_decision_timeout_s=4.0, models_dir=folder / "no-models")
    with running_service(settings_, build_assessor(settings_)) as svc:
        yield svc


@pytest.fixture(scope="module")
def bodies(seeded_sandbox: Any, sc: Scenario) -> list[dict[str, Any]]:
    fhir = seeded_sandbox.base_url
    orders = drafts(sc.patient, sc.sign_drugs)
    return [
        hook_body("order-sign", sc.patient, draft_orders=orders, prefetch=ehr_prefetch(fhir, sc.patient)),
        hook_body("order-sign", sc.patient, draft_orders=orders, fhir_server=fhir,
                  prefetch=ehr_prefetch(fhir, sc.patient, ("patient", "adverseEvents"))),
    ]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as c:
        yield c


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths_of(v, (*prefix, i))
    return found


def mutate(body: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value
    body = copy.deepcopy(body)
    parent: Any = body
    for part in path[:-1]:
        parent = parent[part]
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[f"x{len(parent)}"] = value
    else:
        parent[path[-1]] = value
    return body


def check(client: httpx.Client, ehr: MiniEhr, service: Service, body: Any) -> None:
    r = post(client, ehr, service.url(SIGN), body)
    assert r.status_code in {200, 400, 412}, (r.status_code, r.text[:500])
    if r.status_code == 200:
        assert spec_problems(r.json()) == []


@FUZZ
@given(data=st.data())
def test_mutated_order_sign_never_5xx(
    client: httpx.Client, ehr: MiniEhr, service: Service, bodies: list[dict[str, Any]], data: st.DataObject
) -> None:
    body = data.draw(st.sampled_from(bodies))
    paths = paths_of(body)
    orders = [p for p in paths if p[:2] == ("context", "draftOrders")]
    # half of the mutations hit the draft orders, the part the decision code reads most closely
    target = data.draw(st.sampled_from(orders) | st.sampled_from(paths))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    value = data.draw(json_values)
    check(client, ehr, service, mutate(body, target, action if target else "replace", value))


medication_requests = st.fixed_dictionaries(
    {"resourceType": st.just("MedicationRequest")},
    optional={
        "id": st.text(max_size=70) | json_values,
        "status": st.sampled_from(["draft", "active", "on-hold", "cancelled", "entered-in-error"]) | json_values,
        "intent": st.sampled_from(["order", "proposal", "plan"]) | json_values,
        "subject": st.fixed_dictionaries({"reference": st.text(max_size=30)}) | json_values,
        "medicationCodeableConcept": st.fixed_dictionaries(
            {},
            optional={
                "coding": st.lists(st.fixed_dictionaries(
                    {},
                    optional={
                        "system": st.sampled_from(["http://www.nlm.nih.gov/research/umls/rxnorm", "urn:x"]),
                        "code": st.sampled_from(["2555", "3002", "40048", "12574"]) | st.text(max_size=12),
                        "display": st.text(max_size=300),
                    },
                ), max_size=3),
                "text": st.text(max_size=300),
            },
        ) | json_values,
        "medicationReference": st.fixed_dictionaries({"reference": st.text(max_size=40)}) | json_values,
        "dosageInstruction": json_values,
    },
)


@FUZZ
@given(orders=st.lists(medication_requests | json_values, max_size=6), full=st.booleans())
def test_generated_draft_orders_never_5xx(
    client: httpx.Client, ehr: MiniEhr, service: Service, bodies: list[dict[str, Any]], orders: list[Any], full: bool
) -> None:
    body = copy.deepcopy(bodies[0 if full else 1])
    body["context"]["draftOrders"]["entry"] = [{"resource": o} for o in orders]
    check(client, ehr, service, body)


def test_fuzz_bodies_are_answered_with_cards(
    client: httpx.Client, ehr: MiniEhr, service: Service, bodies: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The unmutated starting points do reach the decision code (cards, not an early 400)."""
    for body in bodies:
        r = post(client, ehr, service.url(SIGN), body)
        assert r.status_code == 200, r.text
        # the recorded grade-3 event of the drafted drug: its history card and the rule's warning on the draft
        topics = sorted(card["source"]["topic"]["code"] for card in r.json()["cards"])
        assert topics == ["overprescription", "prior-ade"], r.text
