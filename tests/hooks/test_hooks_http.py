"""The hooks app over real HTTP (uvicorn on a free port) with a fake decision service."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from ehr import (
    MiniEhr,
    feedback_body,
    order_select_body,
    order_sign_body,
    patient_view_body,
)
from fakes import FakeDecisions

from hooks import (
    Action,
    BadHookRequest,
    Card,
    CdsResponse,
    HookCall,
    OrderSelectContext,
    OrderSignContext,
    PrefetchUnavailable,
    Source,
    Suggestion,
)

SIGN = "oncovigil-order-sign"
SELECT = "oncovigil-order-select"
VIEW = "oncovigil-patient-view"


def no_empty_values(value: Any, path: str = "$", keep: tuple[str, ...] = ("$.cards",)) -> list[str]:
    """Paths whose value is null, "", [] or {} (the spec asks to omit those), except ``keep``."""
    found = []
    if path not in keep and (value is None or (isinstance(value, str | list | dict) and len(value) == 0)):
        found.append(path)
    if isinstance(value, dict):
        for k, v in value.items():
            found += no_empty_values(v, f"{path}.{k}", keep)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += no_empty_values(v, f"{path}[{i}]", keep)
    return found


def post(client: httpx.Client, ehr: MiniEhr, url: str, body: Any, **kw: Any) -> httpx.Response:
    return client.post(url, json=body, headers=ehr.auth(url, **kw))


def test_discovery_lists_services_with_valid_prefetch(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = f"{live}/cds-services"
    r = client.get(url, headers=ehr.auth(url))
    assert r.status_code == 200
    doc = r.json()
    assert no_empty_values(doc) == []
    by_id = {s["id"]: s for s in doc["services"]}
    assert {k: v["hook"] for k, v in by_id.items()} == {
        SIGN: "order-sign",
        SELECT: "order-select",
        VIEW: "patient-view",
    }
    for service in doc["services"]:
        assert service["description"] and service["title"] and service["usageRequirements"]
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert service["prefetch"]["adverseEvents"] == "AdverseEvent?subject=Patient/{{context.patientId}}"
        for template in service["prefetch"].values():
            assert "draftOrders" not in template


def test_order_sign_answers_cards_and_hands_a_typed_call(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    url = f"{live}/cds-services/{SIGN}"
    body = order_sign_body("pat-7")
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = {
        "access_token": "secret-token-xyz",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "oncovigil",
        "patient": "pat-7",
    }
    r = post(client, ehr, url, body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert len(cards) == 2
    assert no_empty_values(r.json()) == []
    assert cards[0]["indicator"] == "warning"
    assert cards[0]["suggestions"][0]["actions"][0] == {
        "type": "delete",
        "description": "Remove the draft order for Drug draft-1",
        "resourceId": "MedicationRequest/draft-1",
    }
    (call,) = fake.calls
    assert call.service_id == SIGN and call.hook == "order-sign"
    assert call.hook_instance == body["hookInstance"]
    assert call.context.patientId == "pat-7"
    assert call.prefetch["patient"] == body["prefetch"]["patient"]
    assert call.client is not None and call.client.iss == ehr.iss
    assert call.fhir_authorization is not None
    assert call.fhir_authorization.access_token.get_secret_value() == "secret-token-xyz"
    assert "secret-token-xyz" not in repr(call)
    assert 0 < call.time_left_s() <= 0.5


def test_order_sign_on_resign_accepts_active_orders(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    url = f"{live}/cds-services/{SIGN}"
    r = post(client, ehr, url, order_sign_body(status="active"))
    assert r.status_code == 200
    assert len(r.json()["cards"]) == 2
    # The cards come from the fake; what hooks owns is handing the re-signed orders on unchanged.
    (call,) = fake.calls
    assert call.hook == "order-sign" and isinstance(call.context, OrderSignContext)
    entries = call.context.draftOrders["entry"]
    assert [(e["resource"]["id"], e["resource"]["status"]) for e in entries] == [
        (f"draft-{i}", "active") for i in range(1, 6)
    ]


def test_order_select_focuses_on_selections(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    url = f"{live}/cds-services/{SELECT}"
    r = post(client, ehr, url, order_select_body())
    assert r.status_code == 200
    (card,) = r.json()["cards"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-1"
    (call,) = fake.calls
    assert (call.service_id, call.hook) == (SELECT, "order-select")
    assert isinstance(call.context, OrderSelectContext)
    assert call.context.selections == ["MedicationRequest/draft-1"]
    entries = call.context.draftOrders["entry"]
    assert [(e["resource"]["id"], e["resource"]["status"]) for e in entries] == [
        ("draft-1", "draft"),
        ("draft-2", "draft"),
        ("draft-3", "draft"),
    ]


def test_patient_view_answers(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = f"{live}/cds-services/{VIEW}"
    r = post(client, ehr, url, patient_view_body())
    assert r.status_code == 200
    (card,) = r.json()["cards"]
    assert card["indicator"] == "critical"
    assert card["source"]["topic"]["code"] == "prior-ade"


def test_no_advice_is_an_empty_card_list(live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions) -> None:
    async def nothing(call: HookCall) -> CdsResponse:
        return CdsResponse()

    fake.behaviour = nothing
    url = f"{live}/cds-services/{VIEW}"
    r = post(client, ehr, url, patient_view_body())
    assert (r.status_code, r.json()) == (200, {"cards": []})


def test_missing_prefetch_without_fhir_server_is_412_operation_outcome(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    url = f"{live}/cds-services/{SIGN}"
    r = post(client, ehr, url, order_sign_body(with_prefetch=False))
    assert r.status_code == 412
    # The fake raises from what hooks tells it; the hooks side is that every template counts as missing.
    (call,) = fake.calls
    assert call.fhir_server is None and dict(call.prefetch) == {}
    assert call.missing_prefetch() == ["patient", "medications", "conditions", "allergies", "adverseEvents"]
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["severity"] == "error" and issue["expression"] == ["prefetch.patient"]
    assert issue["details"]["coding"][0]["code"] == "OV-3040"


def test_null_prefetch_counts_as_sent(live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions) -> None:
    url = f"{live}/cds-services/{SIGN}"
    body = order_sign_body()
    body["prefetch"]["patient"] = None
    r = post(client, ehr, url, body)
    assert r.status_code == 200
    assert "patient" in fake.calls[0].prefetch and fake.calls[0].prefetch["patient"] is None


def test_decision_service_bad_request_is_400(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    async def refuse(call: HookCall) -> CdsResponse:
        raise BadHookRequest("draftOrders has no MedicationRequest", code="OV-3025")

    fake.behaviour = refuse
    url = f"{live}/cds-services/{SIGN}"
    r = post(client, ehr, url, order_sign_body())
    assert r.status_code == 400 and r.json()["code"] == "OV-3025"


def test_prefetch_unavailable_from_decision_service(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    async def unreachable(call: HookCall) -> CdsResponse:
        raise PrefetchUnavailable(["allergies", "medications"])

    fake.behaviour = unreachable
    url = f"{live}/cds-services/{SIGN}"
    r = post(client, ehr, url, order_sign_body())
    assert r.status_code == 412
    assert r.json()["issue"][0]["expression"] == ["prefetch.allergies", "prefetch.medications"]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        (patient_view_body(), "OV-3023", "answers hook 'order-sign'"),
        (
            {"hook": "order-sign", "hookInstance": "x", "context": {"userId": "Practitioner/1"}},
            "OV-3021",
            "patientId",
        ),
        ({**order_sign_body(), "hook": "medication-prescribe"}, "OV-3021", "hook"),
        (
            {**order_sign_body(), "context": {**order_sign_body()["context"], "draftOrders": {"a": 1}}},
            "OV-3021",
            "Bundle",
        ),
        (
            {
                **order_sign_body(),
                "fhirAuthorization": {
                    "access_token": "t",
                    "token_type": "Bearer",
                    "expires_in": 1,
                    "scope": "s",
                    "subject": "c",
                },
            },
            "OV-3021",
            "cds-r-1",
        ),
        ([1, 2, 3], "OV-3021", "body"),
    ],
    ids=[
        "hook-mismatch",
        "missing-field",
        "unknown-hook",
        "draft-not-bundle",
        "token-without-server",
        "array",
    ],
)
def test_bad_requests_are_400_with_code(
    live: str, client: httpx.Client, ehr: MiniEhr, body: Any, code: str, needle: str
) -> None:
    url = f"{live}/cds-services/{SIGN}"
    r = post(client, ehr, url, body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code
    assert needle in r.json()["message"] + str(r.json().get("errors"))


def test_malformed_json_is_400(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = f"{live}/cds-services/{SIGN}"
    r = client.post(
        url, content=b'{"hook": "order-sign",', headers={**ehr.auth(url), "content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "OV-3022"


def test_validation_errors_do_not_echo_input(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = f"{live}/cds-services/{SIGN}"
    body = order_sign_body()
    body["context"]["patientId"] = "Jane Doe / 1961"  # PHI-like garbage must not come back
    r = post(client, ehr, url, body)
    assert r.status_code == 400
    assert "Jane" not in r.text


def test_unknown_service_is_404(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = f"{live}/cds-services/no-such-service"
    r = post(client, ehr, url, order_sign_body())
    assert r.status_code == 404 and r.json()["code"] == "OV-3030"


def test_oversized_body_is_413(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = f"{live}/cds-services/{SIGN}"
    body = order_sign_body()
    body["prefetch"]["patient"]["text"] = {"div": "x" * 70_000}
    r = post(client, ehr, url, body)
    assert r.status_code == 413 and r.json()["code"] == "OV-3031"


def test_oversized_chunked_body_is_413(live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions) -> None:
    url = f"{live}/cds-services/{SIGN}"

    def chunks() -> Any:
        yield b'{"hook": "order-sign", "x": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}'

    r = client.post(url, content=chunks(), headers={**ehr.auth(url), "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "OV-3031"
    assert fake.calls == []


def test_card_breaking_invariant_is_500_and_never_sent(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    async def two_recommended(call: HookCall) -> CdsResponse:
        delete = Action(type="delete", description="remove", resourceId="MedicationRequest/1")
        card = Card.model_construct(
            summary="bad card",
            indicator="warning",
            source=Source(label="OncoVigil"),
            selectionBehavior="at-most-one",
            suggestions=[
                Suggestion(label="a", isRecommended=True, actions=[delete]),
                Suggestion(label="b", isRecommended=True, actions=[delete]),
            ],
            overrideReasons=[],
            links=[],
        )
        return CdsResponse.model_construct(cards=[card], systemActions=[])

    fake.behaviour = two_recommended
    url = f"{live}/cds-services/{SIGN}"
    r = post(client, ehr, url, order_sign_body())
    assert r.status_code == 500
    assert r.json()["code"] == "OV-3070" and "cds-resp-1" in r.json()["message"]
    assert "bad card" not in r.text


def test_card_refused_at_construction_is_500(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    async def long_summary(call: HookCall) -> CdsResponse:
        return CdsResponse(cards=[Card(summary="x" * 140, indicator="info", source=Source(label="OncoVigil"))])

    fake.behaviour = long_summary
    url = f"{live}/cds-services/{VIEW}"
    r = post(client, ehr, url, patient_view_body())
    assert r.status_code == 500 and r.json()["code"] == "OV-3070"


def test_decision_crash_is_500_with_code(live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions) -> None:
    async def crash(call: HookCall) -> CdsResponse:
        raise RuntimeError("boom")

    fake.behaviour = crash
    url = f"{live}/cds-services/{VIEW}"
    r = post(client, ehr, url, patient_view_body())
    assert r.status_code == 500 and r.json()["code"] == "OV-3099"
    assert "boom" not in r.text


def test_decision_past_deadline_is_503(live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions) -> None:
    async def slow(call: HookCall) -> CdsResponse:
        await asyncio.sleep(5)
        return CdsResponse()

    fake.behaviour = slow
    url = f"{live}/cds-services/{VIEW}"
    r = post(client, ehr, url, patient_view_body())
    assert r.status_code == 503 and r.json()["code"] == "OV-3060"
    assert r.elapsed.total_seconds() < 2


def test_feedback_round_trip(live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions) -> None:
    url = f"{live}/cds-services/{SIGN}"
    card = post(client, ehr, url, order_sign_body()).json()["cards"][0]
    suggestion = card["suggestions"][1]["uuid"]

    accepted = feedback_body(card["uuid"], "accepted", acceptedSuggestions=[{"id": suggestion}])
    r = post(client, ehr, f"{url}/feedback", accepted)
    assert (r.status_code, r.content) == (200, b"")
    reason = {"reason": card["overrideReasons"][0], "userComment": "tolerated last cycle"}
    r = post(client, ehr, f"{url}/feedback", feedback_body(card["uuid"], "overridden", overrideReason=reason))
    assert r.status_code == 200

    (first_sid, first), (_, second) = fake.feedback
    assert first_sid == SIGN
    assert first[0].card == card["uuid"] and first[0].acceptedSuggestions[0].id == suggestion
    assert second[0].outcome == "overridden"
    assert second[0].overrideReason is not None and second[0].overrideReason.reason is not None
    assert second[0].overrideReason.reason.code == "benefit-outweighs-risk"


@pytest.mark.parametrize(
    "body",
    [
        {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-23T10:15:00"}]},
        {"feedback": [{"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-11-23T10:15:00Z"}]},
        feedback_body("c", "overridden", acceptedSuggestions=[{"id": "s"}]),
        {"feedback": []},
    ],
    ids=["naive-timestamp", "bad-outcome", "overridden-with-accepted", "empty"],
)
def test_bad_feedback_is_400(live: str, client: httpx.Client, ehr: MiniEhr, body: Any) -> None:
    url = f"{live}/cds-services/{SIGN}/feedback"
    r = post(client, ehr, url, body)
    assert r.status_code == 400 and r.json()["code"] == "OV-3021"


def test_feedback_store_failure_is_500(live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions) -> None:
    fake.feedback_error = OSError("disk full")
    url = f"{live}/cds-services/{SIGN}/feedback"
    r = post(client, ehr, url, feedback_body("c"))
    assert r.status_code == 500 and r.json()["code"] == "OV-3099"


def test_feedback_for_unknown_service_is_404(
    live: str, client: httpx.Client, ehr: MiniEhr, fake: FakeDecisions
) -> None:
    url = f"{live}/cds-services/nope/feedback"
    r = post(client, ehr, url, feedback_body("c"))
    assert r.status_code == 404 and r.json()["code"] == "OV-3030"
    assert fake.feedback == []


def test_cors_preflight_for_configured_origin_only(live: str, client: httpx.Client) -> None:
    url = f"{live}/cds-services/{SIGN}"
    headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = client.options(url, headers={**headers, "Origin": "http://sandbox.local:8080"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://sandbox.local:8080"
    other = client.options(url, headers={**headers, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_fhir_token_never_logged(
    live: str, client: httpx.Client, ehr: MiniEhr, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{live}/cds-services/{SIGN}"
    body = order_sign_body()
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = {
        "access_token": "tok-do-not-log",
        "token_type": "Bearer",
        "expires_in": 60,
        "scope": "patient/*.read",
        "subject": "oncovigil",
    }
    token = ehr.sign(url)
    with caplog.at_level(logging.DEBUG):
        r = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    logged = "\n".join(f"{rec.getMessage()} {vars(rec)}" for rec in caplog.records)
    assert "cds decision" in logged
    assert "tok-do-not-log" not in logged and token not in logged
