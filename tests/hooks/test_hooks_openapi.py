"""The OpenAPI document describes every endpoint, and schemathesis fuzzing driven by it finds no 500.

The app is built with ``public_base_url`` so the JWT ``aud`` does not depend on the test transport's host:
every generated case is signed for ``{public_base_url}{path}`` (percent-decoded, as the server builds it from
the path parameter) and therefore gets past authentication.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import schemathesis
from ehr import MiniEhr
from fakes import ConstantDecisions
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hooks import (
    HooksConfig,
    InMemoryReplayStore,
    JwtVerifier,
    create_hooks_app,
    default_services,
)

PUBLIC = "https://cds.example.org/oncovigil"
EHR = MiniEhr()


def build_app() -> FastAPI:
    verifier = JwtVerifier(EHR.jwt_config(), InMemoryReplayStore())
    config = HooksConfig(environment="test", public_base_url=PUBLIC)
    return create_hooks_app(default_services(), ConstantDecisions(), verifier, config)


def test_openapi_describes_every_endpoint() -> None:
    doc = TestClient(build_app()).get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths) == {"/cds-services", "/cds-services/{service_id}", "/cds-services/{service_id}/feedback"}
    discovery = paths["/cds-services"]["get"]
    assert discovery["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DiscoveryResponse")
    service = paths["/cds-services/{service_id}"]["post"]
    body = service["requestBody"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in body["oneOf"]} == {
        "PatientViewRequest",
        "OrderSelectRequest",
        "OrderSignRequest",
    }
    assert body["discriminator"]["propertyName"] == "hook"
    assert {"200", "400", "401", "404", "412", "413", "500", "503"} <= set(service["responses"])
    assert "422" not in service["responses"]
    assert service["parameters"][0]["schema"]["enum"] == sorted(s.id for s in default_services())
    feedback = paths["/cds-services/{service_id}/feedback"]["post"]
    assert feedback["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/FeedbackRequest")
    assert doc["components"]["securitySchemes"]["cdsHooksJwt"]["bearerFormat"] == "JWT"
    card = doc["components"]["schemas"]["Card"]
    assert card["properties"]["summary"]["maxLength"] == 139
    assert set(card["required"]) == {"summary", "indicator", "source"}


schema = schemathesis.openapi.from_asgi("/openapi.json", build_app())


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(max_examples=15, database=None, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case: Any) -> None:
    case.headers = {**(case.headers or {}), **EHR.auth(PUBLIC + unquote(case.formatted_path))}
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text)
    assert response.status_code in {200, 400, 404, 405}, (case.formatted_path, response.status_code, response.text)
    case.validate_response(
        response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
    )
