"""Property-based fuzzing: whatever bodies and headers arrive, the hooks app never answers 500.

Hypothesis drives random JSON, mutated valid requests, raw bytes and hostile JWTs through the app in process
(TestClient with ``raise_server_exceptions``: an escaped exception fails the test with its traceback).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
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


# What hooks itself answers for a bad body: schema violation, invalid JSON, hook/service mismatch.
# ConstantDecisions never raises, so a 400 with any other code would come from somewhere unexpected.
BAD_REQUEST_CODES = {"OV-3021", "OV-3022", "OV-3023"}


def call(client: TestClient, ehr: MiniEhr, path: str, body: Any = None, raw: bytes | None = None) -> httpx.Response:
    headers = {**ehr.auth(BASE + path), "content-type": "application/json"}
    r: httpx.Response
    if path == "/cds-services":
        r = client.get(path, headers=headers)
    else:
        r = client.post(path, content=raw if raw is not None else json.dumps(body).encode(), headers=headers)
    return r


def assert_answer(path: str, r: httpx.Response) -> None:
    """A status alone could hide a body FastAPI made up (a 422-style detail, a bare 404); check the body too."""
    info = (path, r.status_code, r.text[:300])
    if r.status_code == 400:
        assert r.json()["code"] in BAD_REQUEST_CODES, info
    elif r.status_code == 404:
        assert r.json()["code"] == "OV-3030", info
    elif r.status_code == 200 and path == "/cds-services":
        assert isinstance(r.json()["services"], list) and r.json()["services"], info
    elif r.status_code == 200 and path.endswith("/feedback"):
        assert r.content == b"", info
    elif r.status_code == 200:
        cards = r.json()["cards"]
        assert isinstance(cards, list) and [c["summary"] for c in cards] == ["ok"], info


@FUZZ
@given(data=st.data())
def test_mutated_valid_requests_never_500(app_client: TestClient, ehr: MiniEhr, data: st.DataObject) -> None:
    path, body = data.draw(st.sampled_from(valid_bodies()))
    target = data.draw(st.sampled_from(paths_of(body)))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    value = data.draw(json_values)
    mutated = mutate(body, target, action if target else "replace", value)
    r = call(app_client, ehr, path, mutated)
    assert r.status_code in {200, 400}, (target, action, r.status_code)
    assert_answer(path, r)


@FUZZ
@given(path=st.sampled_from(PATHS), body=json_values)
def test_random_json_never_500(app_client: TestClient, ehr: MiniEhr, path: str, body: Any) -> None:
    r = call(app_client, ehr, path, body)
    assert r.status_code in {200, 400}
    assert_answer(path, r)


@FUZZ
@given(path=st.sampled_from([*PATHS[1:], "/cds-services/unknown"]), raw=st.binary(max_size=300))
def test_random_bytes_never_500(app_client: TestClient, ehr: MiniEhr, path: str, raw: bytes) -> None:
    r = call(app_client, ehr, path, raw=raw)
    assert r.status_code in {400, 404}
    assert_answer(path, r)


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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(ehr: MiniEhr, alg: str, header: dict[str, Any], claim_set: dict[str, Any]) -> str:
    """A JWT whose header and claims are exactly the JSON given, signed with the EHR's real key.

    Built by hand because jwt.encode refuses hostile headers (non-string ``alg``, ``kid`` lists...), which are
    exactly the ones the verifier must survive; a real signature lets them get past the signature check too.
    """
    full_header = {"alg": alg, "typ": "JWT", "kid": ehr.ec_kid if alg == "ES384" else ehr.rsa_kid, **header}
    signing_input = f"{_b64(json.dumps(full_header).encode())}.{_b64(json.dumps(claim_set).encode())}"
    key = ehr.ec_key if alg == "ES384" else ehr.rsa_key
    signature = jwt.get_algorithm_by_name(alg).sign(signing_input.encode(), key)
    return f"{signing_input}.{_b64(signature)}"


def test_hand_signed_tokens_are_accepted_when_nothing_is_hostile(app_client: TestClient, ehr: MiniEhr) -> None:
    # Without this, a broken hand_signed would turn every hostile example into an easy 401.
    for alg in ("ES384", "RS384"):
        token = hand_signed(ehr, alg, {}, ehr.claims(f"{BASE}/cds-services"))
        r = app_client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, (alg, r.text)


@FUZZ
@given(alg=st.sampled_from(["ES384", "RS384"]), claim_set=claims, header=headers)
def test_hostile_tokens_never_500(
    app_client: TestClient, ehr: MiniEhr, alg: str, claim_set: dict[str, Any], header: dict[str, Any]
) -> None:
    token = hand_signed(ehr, alg, header, claim_set)
    r = app_client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in {200, 401}
    if r.status_code == 401:
        assert r.json()["code"] == "OV-3050"
    else:
        assert r.json()["services"]


@FUZZ
@given(
    value=st.text(max_size=200)
    | st.text(max_size=200).map(lambda t: f"Bearer {t}")
    | st.binary(max_size=100).map(lambda b: b.decode("latin-1"))
)
def test_random_authorization_headers_are_401(app_client: TestClient, value: str) -> None:
    # Bytes, because httpx refuses non-ASCII str header values before anything is sent.
    r = app_client.get("/cds-services", headers={"Authorization": value.encode("utf-8")})
    assert r.status_code == 401, value
    assert r.json()["code"] == "OV-3050"
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
