"""A mini-EHR for tests: signing keys and JWKS, CDS Hooks JWTs, request bodies, and a live server runner.

Reusable by integration tests elsewhere (``tests/hooks`` must be importable, e.g. on ``sys.path``):

    ehr = MiniEhr()
    verifier = JwtVerifier(ehr.jwt_config(), InMemoryReplayStore())
    with serve(create_hooks_app(default_services(), decisions, verifier, HooksConfig())) as base:
        url = f"{base}/cds-services/oncovigil-order-sign"
        httpx.post(url, json=ehr.order_sign_body("p1"), headers=ehr.auth(url))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hooks import IssuerTrust, JwtConfig

DEFAULT_ISS = "https://ehr.example.org"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class MiniEhr:
    """An EHR with one ES384 and one RS384 signing key (fresh per instance)."""

    def __init__(self, iss: str = DEFAULT_ISS) -> None:
        self.iss = iss
        self.ec_key = ec.generate_private_key(ec.SECP384R1())
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_kid = f"es384-{uuid.uuid4().hex[:8]}"
        self.rsa_kid = f"rs384-{uuid.uuid4().hex[:8]}"

    # -- keys -------------------------------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        """The public JWKS an EHR publishes (what OncoVigil pins in its configuration)."""
        ec_jwk = ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)
        ec_jwk.update(kid=self.ec_kid, use="sig", alg="ES384")
        rsa_jwk.update(kid=self.rsa_kid, use="sig", alg="RS384")
        return {"keys": [ec_jwk, rsa_jwk]}

    def issuer_trust(self, *, allowed_jku: Sequence[str] = (), tenants: Sequence[str] | None = None) -> IssuerTrust:
        return IssuerTrust(jwks=self.jwks(), allowed_jku=tuple(allowed_jku), tenants=tenants)

    def jwt_config(self, **kwargs: Any) -> JwtConfig:
        return JwtConfig(trusted_issuers={self.iss: self.issuer_trust()}, **kwargs)

    def public_pem(self, alg: str = "ES384") -> bytes:
        key = self.ec_key.public_key() if alg == "ES384" else self.rsa_key.public_key()
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    # -- tokens -----------------------------------------------------------------------------------------
    def claims(self, aud: str | list[str], *, lifetime_s: int = 300, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "aud": aud,
            "exp": now + lifetime_s,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self,
        aud: str | list[str],
        *,
        alg: str = "ES384",
        kid: str | None = None,
        headers: Mapping[str, Any] | None = None,
        lifetime_s: int = 300,
        **claim_overrides: Any,
    ) -> str:
        """A CDS Hooks JWT for ``aud``; ``iss=...``, ``jti=...`` etc. override a claim, ``None`` drops it."""
        key = self.ec_key if alg == "ES384" else self.rsa_key
        kid = kid or (self.ec_kid if alg == "ES384" else self.rsa_kid)
        header = {"typ": "JWT", "kid": kid, **(headers or {})}
        payload = self.claims(aud, lifetime_s=lifetime_s, **claim_overrides)
        return jwt.encode(payload, key, algorithm=alg, headers=header)

    def auth(self, aud: str | list[str], **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sign(aud, **kwargs)}"}

    def forge_unsigned(self, aud: str, **claim_overrides: Any) -> str:
        """``alg: none`` with an empty signature."""
        header = {"alg": "none", "typ": "JWT", "kid": self.ec_kid}
        payload = self.claims(aud, **claim_overrides)
        return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."

    def forge_header(self, aud: str, **header_overrides: Any) -> str:
        """A token whose header says what the caller wants (any JSON), with a junk signature."""
        header = {"alg": "ES384", "typ": "JWT", "kid": self.ec_kid, **header_overrides}
        payload = self.claims(aud)
        return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.{_b64(b'x' * 96)}"

    def forge_hs256_with_public_key(self, aud: str, alg: str = "ES384") -> str:
        """The key-confusion attack: HMAC-SHA256 keyed with our published public key PEM."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.ec_kid if alg == "ES384" else self.rsa_kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(aud)).encode())}"
        mac = hmac.new(self.public_pem(alg), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"


# -- request bodies --------------------------------------------------------------------------------------
def medication_request(
    order_id: str, patient_id: str, code: str, display: str, *, status: str = "draft"
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}],
            "text": display,
        },
    }


DRUGS: tuple[tuple[str, str], ...] = (
    ("26225", "Ondansetron"),
    ("3002", "Cyclophosphamide"),
    ("56946", "Paclitaxel"),
    ("4492", "Fluorouracil"),
    ("40048", "Carboplatin"),
    ("3639", "Doxorubicin"),
)


def draft_orders(patient_id: str, n: int = 5, *, status: str = "draft") -> dict[str, Any]:
    entries = []
    for i in range(n):
        code, display = DRUGS[i % len(DRUGS)]
        entries.append({"resource": medication_request(f"draft-{i + 1}", patient_id, code, display, status=status)})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def prefetch(patient_id: str) -> dict[str, Any]:
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    return {
        "patient": {
            "resourceType": "Patient",
            "id": patient_id,
            "gender": "female",
            "birthDate": "1961-04-02",
        },
        "medications": empty,
        "conditions": empty,
        "allergies": empty,
        "adverseEvents": empty,
    }


def _base(hook: str, patient_id: str, context: dict[str, Any], with_prefetch: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/prac-1",
            "patientId": patient_id,
            "encounterId": "enc-1",
            **context,
        },
    }
    if with_prefetch:
        body["prefetch"] = prefetch(patient_id)
    return body


def order_sign_body(
    patient_id: str = "pat-1", *, n_orders: int = 5, status: str = "draft", with_prefetch: bool = True
) -> dict[str, Any]:
    return _base(
        "order-sign",
        patient_id,
        {"draftOrders": draft_orders(patient_id, n_orders, status=status)},
        with_prefetch,
    )


def order_select_body(patient_id: str = "pat-1", *, n_orders: int = 3, with_prefetch: bool = True) -> dict[str, Any]:
    context = {
        "selections": ["MedicationRequest/draft-1"],
        "draftOrders": draft_orders(patient_id, n_orders),
    }
    return _base("order-select", patient_id, context, with_prefetch)


def patient_view_body(patient_id: str = "pat-1", *, with_prefetch: bool = True) -> dict[str, Any]:
    return _base("patient-view", patient_id, {}, with_prefetch)


def feedback_body(card: str, outcome: str = "accepted", **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "card": card,
        "outcome": outcome,
        "outcomeTimestamp": "2026-11-23T10:15:00Z",
        **fields,
    }
    return {"feedback": [item]}


# -- live server -----------------------------------------------------------------------------------------
@contextmanager
def serve(app: Any, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port in a background thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
