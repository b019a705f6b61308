"""Trusting CDS clients: verification of the EHR's JWT on every discovery, service and feedback call.

Rules (CDS Hooks 2.0 "Trusting CDS Clients" and its best practices):

- ``alg`` is ES384 or RS384; ``none`` and every HMAC algorithm are refused before any key is touched (so the
  classic "HS256 signed with the public key" forgery never reaches a verifier).
- ``iss`` must be configured; its JWKS is pinned in configuration. A ``jku`` header is accepted only when it
  is on that issuer's allowlist, and even then the pinned JWKS is used: nothing is fetched at request time.
- ``kid`` selects the key; the key type must fit ``alg`` (EC P-384 for ES384, RSA >= 2048 bits for RS384).
- ``aud`` (string or array) must contain the exact URL called; ``exp`` not passed, ``iat`` not in the future
  (both with a small leeway), ``nbf`` honoured when sent, ``tenant`` allowlisted where configured,
  ``jti`` never seen before (checked last, after the signature, so forged tokens cannot fill the store).
- Extra claims (``sub``, ``nbf``, vendor claims) are tolerated.

Every failure is :class:`AuthenticationFailed` (a bare 401 for the client) and one log line with ``iss``,
``jti`` and the reason; the token itself is never logged.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hooks.errors import AuthenticationFailed, HooksConfigError

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384"})
MAX_TOKEN_CHARS = 16_384
_MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class IssuerTrust:
    """What we trust about one issuer: its public JWKS (pinned), allowed ``jku`` URLs and tenants."""

    jwks: Mapping[str, Any]
    allowed_jku: Sequence[str] = ()
    tenants: Sequence[str] | None = None


@dataclass(frozen=True)
class JwtConfig:
    """JWT trust settings. ``max_lifetime_s`` bounds ``exp - now`` so the replay store stays bounded."""

    trusted_issuers: Mapping[str, IssuerTrust]
    leeway_s: float = 30.0
    replay_ttl_s: float = 3600.0
    max_lifetime_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.trusted_issuers:
            raise HooksConfigError(
                "no trusted JWT issuers configured; add the EHR's iss and JWKS, or run in development "
                "with JWT checks explicitly disabled",
                code="OV-3010",
            )
        if not 0 <= self.leeway_s <= 300:
            raise HooksConfigError("jwt leeway_s must be between 0 and 300 seconds", code="OV-3011")
        if self.replay_ttl_s <= 0 or self.max_lifetime_s <= 0:
            raise HooksConfigError("jwt replay_ttl_s and max_lifetime_s must be positive", code="OV-3011")


@dataclass(frozen=True)
class VerifiedClient:
    """The EHR that made a verified call."""

    iss: str
    jti: str
    kid: str
    alg: str
    tenant: str | None = None


class ReplayStore(Protocol):
    """Remembers JWT ids until they expire; ``cds`` provides a database-backed one for several workers."""

    async def first_use(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at`` (epoch seconds); True if it was not already recorded."""
        ...


@dataclass
class InMemoryReplayStore:
    """A replay store for one process. Expired ids are dropped as new ones arrive."""

    clock: Callable[[], float] = time.time
    _expiry: dict[str, float] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def first_use(self, key: str, expires_at: float) -> bool:
        now = self.clock()
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                when, old = heapq.heappop(self._heap)
                if self._expiry.get(old) == when:
                    del self._expiry[old]
            if key in self._expiry:
                return False
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def __len__(self) -> int:
        return len(self._expiry)


@dataclass(frozen=True)
class _Key:
    key: PublicKey
    alg: str | None


def _load_keys(iss: str, jwks: Mapping[str, Any]) -> dict[str, _Key]:
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise HooksConfigError(f"JWKS of issuer {iss!r} has no 'keys' list", code="OV-3012")
    loaded: dict[str, _Key] = {}
    for jwk in keys:
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if not isinstance(kid, str) or not kid:
            raise HooksConfigError(f"JWKS of issuer {iss!r} has a key without 'kid'", code="OV-3012")
        if kid in loaded:
            raise HooksConfigError(f"JWKS of issuer {iss!r} repeats kid {kid!r}", code="OV-3012")
        if "d" in jwk or jwk.get("kty") not in ("EC", "RSA"):
            raise HooksConfigError(
                f"key {kid!r} of issuer {iss!r} must be a public EC or RSA key, not private or symmetric",
                code="OV-3013",
            )
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            public = jwt.PyJWK(dict(jwk)).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise HooksConfigError(f"key {kid!r} of issuer {iss!r} cannot be loaded: {exc}", code="OV-3013") from exc
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise HooksConfigError(f"key {kid!r} of issuer {iss!r} is not a public key", code="OV-3013")
        alg = jwk.get("alg")
        loaded[kid] = _Key(public, alg if isinstance(alg, str) else None)
    return loaded


def _fits(key: PublicKey, alg: str) -> bool:
    if alg == "ES384":
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    return isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS


def _clip(value: object) -> str | None:
    # Unverified header/claim values go to the log: keep them short and plain.
    return None if value is None else str(value)[:200]


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _normalise(url: str) -> str:
    return url.rstrip("/")


class JwtVerifier:
    """Verifies ``Authorization: Bearer <JWT>`` against pinned issuer keys and a replay store."""

    def __init__(self, config: JwtConfig, replay_store: ReplayStore, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._replay = replay_store
        self._clock = clock
        self._keys = {iss: _load_keys(iss, trust.jwks) for iss, trust in config.trusted_issuers.items()}

    async def verify(self, authorization: str | None, audiences: Sequence[str]) -> VerifiedClient:
        """The verified client, or :class:`AuthenticationFailed` (logged with iss, jti and reason)."""
        state: dict[str, str | None] = {"iss": None, "jti": None}
        try:
            return await self._verify(authorization, audiences, state)
        except AuthenticationFailed as exc:
            exc.iss, exc.jti = state["iss"], state["jti"]
            log.warning(
                "OV-3050: JWT rejected",
                extra={"iss": state["iss"], "jti": state["jti"], "reason": exc.reason},
            )
            raise

    async def _verify(
        self, authorization: str | None, audiences: Sequence[str], state: dict[str, str | None]
    ) -> VerifiedClient:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthenticationFailed(f"malformed token ({type(exc).__name__})") from None
        if not isinstance(claims, dict):
            raise AuthenticationFailed("claims are not a JSON object")
        iss, jti = claims.get("iss"), claims.get("jti")
        state["iss"], state["jti"] = _clip(iss), _clip(jti)

        alg = header.get("alg")
        # Header values are attacker-controlled JSON: a list or object must be refused, not hashed.
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AuthenticationFailed(f"algorithm {_clip(alg)!r} not allowed")
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise AuthenticationFailed(f"typ {_clip(typ)!r} is not JWT")
        if not isinstance(iss, str) or iss not in self._config.trusted_issuers:
            raise AuthenticationFailed("issuer not trusted")
        trust = self._config.trusted_issuers[iss]
        jku = header.get("jku")
        if jku is not None and (not isinstance(jku, str) or jku not in trust.allowed_jku):
            raise AuthenticationFailed(f"jku {_clip(jku)!r} not on the issuer's allowlist")
        kid = header.get("kid")
        entry = self._keys[iss].get(kid) if isinstance(kid, str) else None
        if entry is None or not isinstance(kid, str):
            raise AuthenticationFailed(f"unknown kid {_clip(kid)!r}")
        if (entry.alg is not None and entry.alg != alg) or not _fits(entry.key, alg):
            raise AuthenticationFailed(f"key {kid!r} does not fit algorithm {alg}")

        self._check_claims(claims, audiences, trust)
        try:
            jwt.decode(
                token,
                entry.key,
                algorithms=[alg],
                options={
                    "verify_signature": True,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": [],
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"signature invalid ({type(exc).__name__})") from None

        if not isinstance(jti, str) or not jti:
            raise AuthenticationFailed("jti missing")
        # Kept at least replay_ttl_s, and never less than the token is accepted.
        now = self._clock()
        expires_at = max(float(claims["exp"]) + self._config.leeway_s, now + self._config.replay_ttl_s)
        if not await self._replay.first_use(f"{iss}\x1f{jti}", expires_at):
            raise AuthenticationFailed("jti replayed")
        tenant = claims.get("tenant")
        return VerifiedClient(iss=iss, jti=jti, kid=kid, alg=alg, tenant=tenant if isinstance(tenant, str) else None)

    def _check_claims(self, claims: Mapping[str, Any], audiences: Sequence[str], trust: IssuerTrust) -> None:
        aud = claims.get("aud")
        sent = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        wanted = {_normalise(a) for a in audiences}
        if not any(isinstance(a, str) and _normalise(a) in wanted for a in sent):
            raise AuthenticationFailed(f"aud {_clip(aud)!r} is not the URL called")

        now, leeway = self._clock(), self._config.leeway_s
        exp, iat, nbf = _number(claims, "exp"), _number(claims, "iat"), _number(claims, "nbf")
        if exp is None or iat is None:
            raise AuthenticationFailed("exp or iat missing or not numeric")
        if exp <= now - leeway:
            raise AuthenticationFailed("token expired")
        if exp - now > self._config.max_lifetime_s:
            raise AuthenticationFailed("token lifetime too long")
        if iat > now + leeway:
            raise AuthenticationFailed("iat in the future")
        if "nbf" in claims and (nbf is None or nbf > now + leeway):
            raise AuthenticationFailed("token not yet valid (nbf)")

        if trust.tenants is not None:
            tenant = claims.get("tenant")
            if not isinstance(tenant, str) or tenant not in trust.tenants:
                raise AuthenticationFailed(f"tenant {_clip(tenant)!r} not allowed")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("Authorization is not a Bearer token")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationFailed("token too long")
    return token
