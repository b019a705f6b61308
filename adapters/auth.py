"""Authentication for the FHIR client, as ``httpx.Auth`` flows.

No auth (``auth=None``), a static bearer token, or SMART Backend Services: a client_credentials grant
authenticated by a ``private_key_jwt`` assertion signed RS384 or ES384
(https://hl7.org/fhir/smart-app-launch/backend-services.html). The token is cached until shortly before it
expires and fetched again once when the FHIR server answers 401. The token request goes through the same
``httpx.AsyncClient`` (same pool, timeouts and transport) as the FHIR requests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Literal

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from adapters.errors import FhirAuthError, FhirConfigError

Auth = httpx.Auth
SmartAlg = Literal["RS384", "ES384"]
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class BearerTokenAuth(httpx.Auth):
    """A static bearer token (for servers that hand out long-lived tokens)."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise FhirConfigError("OV-1003", "bearer token is empty; set the FHIR bearer token or choose auth 'none'")
        self._header = f"Bearer {token.strip()}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


@dataclass(frozen=True, slots=True)
class SmartBackendConfig:
    """A registered SMART backend client: its id, token endpoint and private key (PEM)."""

    token_url: str
    client_id: str
    private_key_pem: bytes
    key_id: str
    alg: SmartAlg = "RS384"
    scope: str = "system/*.read"
    assertion_lifetime_s: int = 300
    refresh_margin_s: float = 60.0


def _check_key(pem: bytes, alg: SmartAlg) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise FhirConfigError(
            "OV-1004", f"SMART private key cannot be read ({exc}); give an unencrypted PEM private key"
        ) from exc
    if alg == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise FhirConfigError("OV-1005", "SMART alg RS384 needs an RSA private key of at least 2048 bits")
        return key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise FhirConfigError("OV-1005", "SMART alg ES384 needs an EC private key on curve P-384")
    return key


class SmartBackendAuth(httpx.Auth):
    """SMART Backend Services: signs an assertion, trades it for an access token, caches the token."""

    def __init__(self, config: SmartBackendConfig, *, clock: Callable[[], float] = time.time) -> None:
        if config.assertion_lifetime_s <= 0 or config.assertion_lifetime_s > 300:
            raise FhirConfigError("OV-1006", "SMART assertion lifetime must be within 1..300 s (the spec's maximum)")
        self._config = config
        self._key = _check_key(config.private_key_pem, config.alg)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.tokens_fetched = 0

    def assertion(self) -> str:
        """A fresh signed assertion: ``iss = sub = client_id``, ``aud = token_url``, a unique ``jti``."""
        now = int(self._clock())
        claims = {
            "iss": self._config.client_id,
            "sub": self._config.client_id,
            "aud": self._config.token_url,
            "exp": now + self._config.assertion_lifetime_s,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self._config.key_id, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm=self._config.alg, headers=headers)

    def _token_request(self) -> httpx.Request:
        form = {
            "grant_type": "client_credentials",
            "scope": self._config.scope,
            "client_assertion_type": _ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        return httpx.Request("POST", self._config.token_url, data=form, headers={"Accept": "application/json"})

    def _store(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error", "") if isinstance(body, dict) else ""
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            said = f" ({error}: {description})" if error or description else ""
            raise FhirAuthError(
                "OV-1010",
                f"token endpoint {self._config.token_url} answered HTTP {response.status_code}{said}; "
                "check the client id, the registered public key (kid) and the scope",
            )
        lifetime = float(body.get("expires_in") or 300)
        margin = min(self._config.refresh_margin_s, lifetime / 2)
        self._token = str(body["access_token"])
        self._expires_at = self._clock() + lifetime - margin
        self.tokens_fetched += 1
        return self._token

    def _cached(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_at:
            return self._token
        return None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("SmartBackendAuth works only with httpx.AsyncClient")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        async with self._lock:
            token = self._cached()
            if token is None:
                token = await self._fetch((yield self._token_request()))
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # One refresh only: a second 401 means the token is fine and we are not allowed.
        async with self._lock:
            if self._token == token:
                self._token = None
            fresh = self._cached()
            if fresh is None:
                fresh = await self._fetch((yield self._token_request()))
        request.headers["Authorization"] = f"Bearer {fresh}"
        yield request

    async def _fetch(self, response: httpx.Response) -> str:
        await response.aread()
        return self._store(response)
