"""Property-based fuzzing: whatever bodies and headers arrive, the hooks app never answers 500.

Hypothesis drives random JSON, mutated valid requests, raw bytes and hostile JWTs through the app in process
(TestClient with ``raise_server_exceptions``: an escaped exception fails the test with its traceback).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from ehr import MiniEhr, feedback_body, order_select_body, order_sign_body, patient_view_body
from fakes import ConstantDecisions
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hooks import (
    HooksConfig,
    InMemoryReplayStore,
    JwtVerifier,
    create_hooks_app,
    default_services,
)

BASE = "http://testserver"
SERVICES = ["oncovigil-order-select", "oncovigil-order-sign", "oncovigil-patient-view"]
PATHS = ["/cds-services"] + [f"/cds-services/{s}" for s in SERVICES] + [f"/cds-services/{s}/feedback" for s in SERVICES]
FUZZ = settings(
    max_examples=100,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=15,
)


@pytest.fixture(scope="module")
def app_client(ehr: MiniEhr) -> Iterator[TestClient]:
    verifier = JwtVerifier(ehr.jwt_config(), InMemoryReplayStore())
    app = create_hooks_app(default_services(), ConstantDecisions(), verifier, HooksConfig(environment="test"))
    with TestClient(app, base_url=BASE) as client:
        yield client


def valid_bodies() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/cds-services/oncovigil-order-sign", order_sign_body()),
        ("/cds-services/oncovigil-order-select", order_select_body()),
        ("/cds-services/oncovigil-patient-view", patient_view_body()),
        ("/cds-services/oncovigil-order-sign/feedback", feedback_body("card-1", acceptedSuggestions=[{"id": "s"}])),
    ]


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
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[f"x{len(parent)}"] = value
    else:
        parent[last] = value
    return body


def call(client: TestClient, ehr: MiniEhr, path: str, body: Any = None, raw: bytes | None = None) -> int:
    headers = {**ehr.auth(BASE + path), "content-type": "application/json"}
    if path == "/cds-services":
        return int(client.get(path, headers=headers).status_code)
    content = raw if raw is not None else json.dumps(body).encode()
    return int(client.post(path, content=content, headers=headers).status_code)


@FUZZ
@given(data=st.data())
def test_mutated_valid_requests_never_500(app_client: TestClient, ehr: MiniEhr, data: st.DataObject) -> None:
    path, body = data.draw(st.sampled_from(valid_bodies()))
    target = data.draw(st.sampled_from(paths_of(body)))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    value = data.draw(json_values)
    mutated = mutate(body, target, action if target else "replace", value)
    status = call(app_client, ehr, path, mutated)
    assert status in {200, 400}, (target, action, status)


@FUZZ
@given(path=st.sampled_from(PATHS), body=json_values)
def test_random_json_never_500(app_client: TestClient, ehr: MiniEhr, path: str, body: Any) -> None:
    assert call(app_client, ehr, path, body) in {200, 400}


@FUZZ
@given(path=st.sampled_from([*PATHS[1:], "/cds-services/unknown"]), raw=st.binary(max_size=300))
def test_random_bytes_never_500(app_client: TestClient, ehr: MiniEhr, path: str, raw: bytes) -> None:
    assert call(app_client, ehr, path, raw=raw) in {400, 404}


claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(["https://ehr.example.org", "https://rogue.example"]) | json_values,
        "aud": st.sampled_from([f"{BASE}/cds-services", [f"{BASE}/cds-services"]]) | json_values,
        "exp": st.integers(-(2**40), 2**40) | json_values,
        "iat": st.integers(-(2**40), 2**40) | json_values,
        "nbf": json_values,
        "jti": st.text(max_size=40) | json_values,
        "tenant": json_values,
    },
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["ES384", "RS384", "none", "HS256", "ES256", "RS256"]) | json_values,
        "kid": st.text(max_size=20) | json_values,
        "jku": st.text(max_size=40) | json_values,
        "typ": st.sampled_from(["JWT", "jwt"]) | json_values,
        "crit": json_values,
    },
)


@FUZZ
@given(alg=st.sampled_from(["ES384", "RS384"]), claim_set=claims, header=headers)
def test_hostile_tokens_never_500(
    app_client: TestClient, ehr: MiniEhr, alg: str, claim_set: dict[str, Any], header: dict[str, Any]
) -> None:
    key = ehr.ec_key if alg == "ES384" else ehr.rsa_key
    try:
        token = jwt.encode(claim_set, key, algorithm=alg, headers={"kid": ehr.ec_kid, **header})
    except (TypeError, ValueError, KeyError, NotImplementedError, jwt.PyJWTError):
        return  # pyjwt refuses to build it; nothing to send
    r = app_client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in {200, 401}


@FUZZ
@given(value=st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_random_authorization_headers_are_401(app_client: TestClient, value: str) -> None:
    try:
        r = app_client.get("/cds-services", headers={"Authorization": value})
    except (UnicodeEncodeError, ValueError):
        return  # not a sendable header value
    assert r.status_code == 401
