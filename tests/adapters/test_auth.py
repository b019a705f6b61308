"""SMART Backend Services and bearer auth against a real local token endpoint and FHIR stub (http.server)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from adapters_testkit import serve
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapters import (
    BearerTokenAuth,
    FhirAuthError,
    FhirClient,
    FhirClientConfig,
    FhirConfigError,
    FhirRequestError,
    SmartBackendAuth,
    SmartBackendConfig,
)

CLIENT_ID = "oncovigil-test"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class AuthState:
    public_keys: dict[str, Any]
    token_url: str = ""
    expires_in: int = 300
    refuse_tokens: bool = False
    reject_all_bearers: bool = False
    valid_tokens: set[str] = field(default_factory=set)
    token_calls: int = 0
    fhir_calls: int = 0
    seen_jti: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    algs: list[str] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], content_type: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # the token endpoint
        state: AuthState = self.server.state  # type: ignore[attr-defined]
        state.token_calls += 1
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
        if state.refuse_tokens:
            self._reply(401, {"error": "invalid_client", "error_description": "unknown kid"})
            return
        for key, expected in (("grant_type", "client_credentials"), ("client_assertion_type", ASSERTION_TYPE)):
            if form.get(key) != expected:
                state.problems.append(f"{key}={form.get(key)}")
        assertion = form.get("client_assertion", "")
        header = jwt.get_unverified_header(assertion)
        state.algs.append(header["alg"])
        try:
            claims = jwt.decode(
                assertion,
                state.public_keys[header["kid"]],
                algorithms=[header["alg"]],
                audience=state.token_url,
                issuer=CLIENT_ID,
                leeway=900,
                options={"require": ["exp", "jti", "iss", "sub", "aud"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            state.problems.append(f"assertion rejected: {exc!r}")
            self._reply(400, {"error": "invalid_client"})
            return
        if claims["sub"] != CLIENT_ID or claims["exp"] - claims["iat"] > 300 or claims["jti"] in state.seen_jti:
            state.problems.append(f"bad claims {claims}")
        state.seen_jti.add(claims["jti"])
        token = f"tok-{state.token_calls}"
        state.valid_tokens.add(token)
        self._reply(
            200,
            {"access_token": token, "token_type": "bearer", "expires_in": state.expires_in, "scope": form.get("scope")},
        )

    def do_GET(self) -> None:  # the FHIR server
        state: AuthState = self.server.state  # type: ignore[attr-defined]
        state.fhir_calls += 1
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if state.reject_all_bearers or bearer not in state.valid_tokens:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "login", "diagnostics": "token expired or revoked"}],
            }
            self._reply(401, outcome, "application/fhir+json")
            return
        self._reply(200, {"resourceType": "Patient", "id": "p1"}, "application/fhir+json")


def _rsa() -> tuple[bytes, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, key.public_key()


def _ec() -> tuple[bytes, Any]:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, key.public_key()


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, Any]:
    return _rsa()


@pytest.fixture(scope="module")
def ec_key() -> tuple[bytes, Any]:
    return _ec()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _smart(base: str, state: AuthState, pem: bytes, alg: str, clock: Clock | None = None) -> SmartBackendAuth:
    state.token_url = f"{base}/token"
    config = SmartBackendConfig(
        token_url=state.token_url,
        client_id=CLIENT_ID,
        private_key_pem=pem,
        key_id="k1",
        alg=alg,  # type: ignore[arg-type]
    )
    return SmartBackendAuth(config, clock=clock or time.time)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
async def test_token_is_fetched_with_a_valid_assertion_and_cached(
    alg: str, rsa_key: tuple[bytes, Any], ec_key: tuple[bytes, Any]
) -> None:
    pem, public = rsa_key if alg == "RS384" else ec_key
    state = AuthState(public_keys={"k1": public})
    with serve(Handler, state) as base:
        auth = _smart(base, state, pem, alg)
        async with FhirClient(FhirClientConfig(f"{base}/fhir"), auth=auth) as fhir:
            assert (await fhir.read("Patient", "p1"))["id"] == "p1"
            assert (await fhir.read("Patient", "p1"))["id"] == "p1"
    assert state.problems == []
    assert state.algs == [alg]
    assert state.token_calls == 1 and state.fhir_calls == 2


async def test_token_is_refetched_shortly_before_it_expires(rsa_key: tuple[bytes, Any]) -> None:
    pem, public = rsa_key
    state = AuthState(public_keys={"k1": public}, expires_in=300)
    clock = Clock()
    with serve(Handler, state) as base:
        auth = _smart(base, state, pem, "RS384", clock)
        async with FhirClient(FhirClientConfig(f"{base}/fhir"), auth=auth) as fhir:
            await fhir.read("Patient", "p1")
            clock.now += 200  # within lifetime minus the 60 s margin
            await fhir.read("Patient", "p1")
            assert state.token_calls == 1
            clock.now += 50  # 250 s: inside the refresh margin
            await fhir.read("Patient", "p1")
            assert state.token_calls == 2
    assert state.problems == []


async def test_a_401_refreshes_the_token_once(rsa_key: tuple[bytes, Any]) -> None:
    pem, public = rsa_key
    state = AuthState(public_keys={"k1": public})
    with serve(Handler, state) as base:
        auth = _smart(base, state, pem, "RS384")
        async with FhirClient(FhirClientConfig(f"{base}/fhir"), auth=auth) as fhir:
            await fhir.read("Patient", "p1")
            state.valid_tokens.clear()  # the server revokes the token it gave
            assert (await fhir.read("Patient", "p1"))["id"] == "p1"
    assert state.token_calls == 2
    assert state.fhir_calls == 3


async def test_a_second_401_is_a_clear_error_not_a_loop(rsa_key: tuple[bytes, Any]) -> None:
    pem, public = rsa_key
    state = AuthState(public_keys={"k1": public}, reject_all_bearers=True)
    with serve(Handler, state) as base:
        auth = _smart(base, state, pem, "RS384")
        async with FhirClient(FhirClientConfig(f"{base}/fhir"), auth=auth) as fhir:
            with pytest.raises(FhirRequestError) as caught:
                await fhir.read("Patient", "p1")
    assert caught.value.code == "OV-1034"
    assert "token expired or revoked" in str(caught.value)
    assert state.token_calls == 2 and state.fhir_calls == 2


async def test_token_endpoint_refusal_says_why(rsa_key: tuple[bytes, Any]) -> None:
    pem, public = rsa_key
    state = AuthState(public_keys={"k1": public}, refuse_tokens=True)
    with serve(Handler, state) as base:
        auth = _smart(base, state, pem, "RS384")
        async with FhirClient(FhirClientConfig(f"{base}/fhir"), auth=auth) as fhir:
            with pytest.raises(FhirAuthError) as caught:
                await fhir.read("Patient", "p1")
    assert caught.value.code == "OV-1010"
    assert "invalid_client" in str(caught.value) and "unknown kid" in str(caught.value)
    assert state.fhir_calls == 0


def test_key_must_match_the_algorithm(rsa_key: tuple[bytes, Any], ec_key: tuple[bytes, Any]) -> None:
    with pytest.raises(FhirConfigError) as caught:
        SmartBackendAuth(SmartBackendConfig("http://t/token", CLIENT_ID, ec_key[0], "k1", alg="RS384"))
    assert caught.value.code == "OV-1005" and caught.value.user_error
    with pytest.raises(FhirConfigError):
        SmartBackendAuth(SmartBackendConfig("http://t/token", CLIENT_ID, rsa_key[0], "k1", alg="ES384"))
    with pytest.raises(FhirConfigError) as unreadable:
        SmartBackendAuth(SmartBackendConfig("http://t/token", CLIENT_ID, b"not a key", "k1"))
    assert unreadable.value.code == "OV-1004"


async def test_static_bearer_token_is_sent() -> None:
    state = AuthState(public_keys={}, valid_tokens={"static-123"})
    with serve(Handler, state) as base:
        async with FhirClient(FhirClientConfig(f"{base}/fhir"), auth=BearerTokenAuth("static-123")) as fhir:
            assert (await fhir.read("Patient", "p1"))["id"] == "p1"
        async with FhirClient(FhirClientConfig(f"{base}/fhir"), auth=BearerTokenAuth("wrong")) as fhir:
            with pytest.raises(FhirRequestError) as refused:
                await fhir.read("Patient", "p1")
    # FhirNotFoundError is a FhirRequestError too: only the 401 code shows the token itself was refused.
    assert (refused.value.status, refused.value.code) == (401, "OV-1034")
    with pytest.raises(FhirConfigError):
        BearerTokenAuth("  ")
