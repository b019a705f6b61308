"""Wire models: spec invariants, empty-field omission, request parsing, prefetch templates, configuration."""

from __future__ import annotations

from typing import Any

import pytest
from ehr import MiniEhr, order_select_body, order_sign_body, patient_view_body
from fakes import FakeDecisions
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError

from hooks import (
    Action,
    Card,
    CardInvariantError,
    CdsResponse,
    Coding,
    HookCall,
    HooksConfig,
    HooksConfigError,
    InMemoryReplayStore,
    JwtVerifier,
    Link,
    OrderSelectRequest,
    ServiceDefinition,
    Source,
    Suggestion,
    create_cds_router,
    create_hooks_app,
    default_services,
)
from hooks.requests import HookRequest
from hooks.router import checked_response
from hooks.services import expand_template

SRC = Source(label="OncoVigil")
DELETE = Action(type="delete", description="Remove the draft", resourceId="MedicationRequest/1")
CREATE = Action(type="create", description="Order instead", resource={"resourceType": "MedicationRequest"})


def card(**fields: Any) -> Card:
    return Card(**{"summary": "s", "indicator": "info", "source": SRC, **fields})


@pytest.mark.parametrize(
    ("build", "invariant"),
    [
        (
            lambda: card(
                selectionBehavior="at-most-one",
                suggestions=[
                    Suggestion(label="a", isRecommended=True, actions=[DELETE]),
                    Suggestion(label="b", isRecommended=True, actions=[CREATE]),
                ],
            ),
            "cds-resp-1",
        ),
        (lambda: Action(type="delete", description="d"), "cds-resp-2"),
        (
            lambda: Action(
                type="delete", description="d", resourceId="MedicationRequest/1", resource={"resourceType": "X"}
            ),
            "cds-resp-2",
        ),
        (lambda: Link(label="l", url="https://x.org", type="absolute", appContext="ctx"), "cds-resp-3"),
        (lambda: card(overrideReasons=[Coding(code="x", system="s")]), "cds-resp-4"),
        (lambda: Action(type="create", description="", resource={"resourceType": "X"}), "description"),
        (lambda: card(suggestions=[Suggestion(label="a", actions=[DELETE])]), "cds-resp-6"),
        (lambda: card(summary="x" * 140), "summary"),
        (lambda: Action(type="update", description="u"), "needs a FHIR resource"),
        (lambda: card(indicator="hard-stop"), "indicator"),
        (lambda: CdsResponse(cards=[card(uuid="u"), card(uuid="u")]), "unique"),
    ],
    ids=["resp-1", "resp-2-missing-id", "resp-2-resource", "resp-3", "resp-4", "resp-5", "resp-6",
         "summary-140", "update-needs-resource", "bad-indicator", "dup-card-uuid"],
)  # fmt: skip
def test_invariants_are_enforced_on_construction(build: Any, invariant: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()
    assert invariant in str(err.value)


def test_valid_edge_cases_pass() -> None:
    assert len(card(summary="x" * 139).summary) == 139
    card(
        selectionBehavior="at-most-one",
        suggestions=[Suggestion(label="a", isRecommended=True, actions=[DELETE]), Suggestion(label="b")],
    )
    card(
        selectionBehavior="any",
        suggestions=[Suggestion(label="a", isRecommended=True), Suggestion(label="b", isRecommended=True)],
    )
    Link(label="app", url="https://app.example.org/launch", type="smart", appContext="{}")


def test_empty_fields_are_omitted_but_cards_list_stays() -> None:
    assert CdsResponse().to_wire() == {"cards": []}
    wire = card(detail=None, links=[], suggestions=[]).to_wire()
    assert wire == {"summary": "s", "indicator": "info", "source": {"label": "OncoVigil"}}
    assert CdsResponse(cards=[card()]).model_dump_json() == (
        '{"cards":[{"summary":"s","indicator":"info","source":{"label":"OncoVigil"}}]}'
    )


def test_checked_response_catches_what_model_construct_let_through() -> None:
    bad = Card.model_construct(summary="x" * 200, indicator="info", source=SRC, suggestions=[], links=[])
    with pytest.raises(CardInvariantError, match="OV-3070"):
        checked_response(CdsResponse.model_construct(cards=[bad], systemActions=[]))
    with pytest.raises(CardInvariantError, match="OV-3071"):
        checked_response([card()])
    assert checked_response(CdsResponse(cards=[card(uuid="u")]))["cards"][0]["uuid"] == "u"


def test_requests_parse_by_hook() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(HookRequest)
    select = adapter.validate_python(order_select_body())
    assert isinstance(select, OrderSelectRequest)
    assert select.context.selections == ["MedicationRequest/draft-1"]
    assert adapter.validate_python(order_sign_body()).context.draftOrders["entry"][0]["resource"]["status"] == "draft"
    view = patient_view_body()
    view["context"]["vendorField"] = {"x": 1}
    view["somethingNew"] = True
    parsed = adapter.validate_python(view)
    assert parsed.context.model_extra == {"vendorField": {"x": 1}}
    with pytest.raises(ValidationError, match="selections"):
        adapter.validate_python(
            {**order_select_body(), "context": {**order_select_body()["context"], "selections": []}}
        )
    with pytest.raises(ValidationError, match="userId"):
        adapter.validate_python({**patient_view_body(), "context": {"userId": "prac-1", "patientId": "p"}})


def test_prefetch_templates_only_allow_spec_tokens() -> None:
    prefetch = {"a": "Encounter/{{context.encounterId}}", "b": "PractitionerRole?practitioner={{userPractitionerId}}"}
    ok = ServiceDefinition(hook="order-sign", id="x", description="d", prefetch=prefetch)
    assert ok.prefetch["a"].endswith("}}")
    for bad in (
        "Bundle/{{context.draftOrders}}",
        "X?{{context.draftOrders.entry.resource.id}}",
        "X/{{today()}}",
        "X/{{c",
    ):
        with pytest.raises(ValidationError, match="prefetch"):
            ServiceDefinition(hook="order-sign", id="x", description="d", prefetch={"k": bad})


def test_expand_template_and_missing_prefetch() -> None:
    body = order_sign_body("pat-3")
    parsed = TypeAdapter(HookRequest).validate_python(body)
    ctx = parsed.context
    assert expand_template("MedicationRequest?patient={{context.patientId}}", ctx) == "MedicationRequest?patient=pat-3"
    assert expand_template("Practitioner/{{userPractitionerId}}", ctx) == "Practitioner/prac-1"
    assert expand_template("Patient/{{userPatientId}}", ctx) is None
    service = default_services()[1]
    call = HookCall(
        service=service, hook="order-sign", hook_instance="h", context=ctx,
        prefetch={"patient": None, "medications": {"resourceType": "Bundle"}},
        fhir_server=None, fhir_authorization=None, deadline=0.0,
    )  # fmt: skip
    assert call.missing_prefetch() == ["conditions", "allergies", "adverseEvents"]
    assert call.prefetch_query("adverseEvents") == "AdverseEvent?subject=Patient/pat-3"
    assert call.prefetch_query("nope") is None


def test_default_services() -> None:
    ids = [s.id for s in default_services()]
    assert ids == ["oncovigil-order-select", "oncovigil-order-sign", "oncovigil-patient-view"]
    assert set(default_services()[0].prefetch) == {"patient", "medications", "conditions", "allergies", "adverseEvents"}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"require_jwt": False, "environment": "production"}, "OV-3002"),
        ({"require_jwt": False, "environment": "test"}, "OV-3002"),
        ({"cors_allow_origins": ("*",), "environment": "production"}, "OV-3003"),
        ({"public_base_url": "cds.example.org"}, "OV-3004"),
        ({"max_body_bytes": 10}, "OV-3005"),
    ],
)
def test_unsafe_config_is_refused(kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(HooksConfigError) as err:
        HooksConfig(**kwargs)
    assert err.value.code == code


def test_factory_refuses_missing_verifier_and_bad_services(ehr: MiniEhr, fake: FakeDecisions) -> None:
    with pytest.raises(HooksConfigError, match="OV-3007"):
        create_hooks_app(default_services(), fake, None, HooksConfig())
    dev = HooksConfig(environment="development", require_jwt=False)
    # Without a verifier in development, discovery must answer even with no Authorization header at all.
    r = TestClient(create_hooks_app(default_services(), fake, None, dev)).get("/cds-services")
    assert r.status_code == 200, r.text
    assert sorted(s["id"] for s in r.json()["services"]) == sorted(s.id for s in default_services())
    bad = ServiceDefinition.model_construct(
        hook="order-sign", id="bad", description="d", prefetch={"k": "{{context.draftOrders}}"}
    )
    verifier = JwtVerifier(ehr.jwt_config(), InMemoryReplayStore())
    with pytest.raises(HooksConfigError, match="OV-3008"):
        create_cds_router([bad], fake, verifier, HooksConfig())
    with pytest.raises(HooksConfigError, match="OV-3008"):
        create_cds_router(default_services() + default_services()[:1], fake, verifier, HooksConfig())
