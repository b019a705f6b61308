"""A minimal EHR side for the demo: an ES384 signing key, its JWKS and CDS Hooks request bodies.

Production EHRs sign with their own keys; OncoVigil pins their public JWKS in the trusted-issuers file.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

DEMO_ISSUER = "https://demo-ehr.oncovigil.local"


class DemoEhr:
    def __init__(self, iss: str = DEMO_ISSUER) -> None:
        self.iss = iss
        self._key = ec.generate_private_key(ec.SECP384R1())
        self.kid = f"demo-{uuid.uuid4().hex[:8]}"

    def trusted_issuers(self) -> dict[str, Any]:
        jwk = ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="ES384")
        return {self.iss: {"jwks": {"keys": [jwk]}}}

    def authorization(self, audience: str) -> str:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": audience, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self._key, algorithm="ES384", headers={"kid": self.kid, "typ": "JWT"})
        return f"Bearer {token}"


def draft_medication_request(request_id: str, patient_id: str, rxnorm: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm, "display": name}],
            "text": name,
        },
        "authoredOn": time.strftime("%Y-%m-%d"),
    }


def order_sign_body(patient_id: str, drafts: list[dict[str, Any]], fhir_server: str) -> dict[str, Any]:
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "context": {
            "userId": "Practitioner/demo-oncologist",
            "patientId": patient_id,
            "draftOrders": {"resourceType": "Bundle", "type": "collection",
                            "entry": [{"resource": d} for d in drafts]},
        },
    }
