"""JWT trust: every case over real HTTP, plus clock-driven checks on the verifier itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ehr import MiniEhr, feedback_body, order_sign_body, serve
from fakes import TENANT_ISS, FakeDecisions
from fastapi import FastAPI

from hooks import (
    AuthenticationFailed,
    HooksConfig,
    HooksConfigError,
    InMemoryReplayStore,
    IssuerTrust,
    JwtConfig,
    JwtVerifier,
    create_hooks_app,
    default_services,
)

SIGN = "oncovigil-order-sign"
UNAUTHORIZED = {"code": "OV-3050"}


def discovery(live: str) -> str:
    return f"{live}/cds-services"


def get(client: httpx.Client, url: str, token: str | None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.get(url, headers=headers)


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_token_is_accepted(live: str, client: httpx.Client, ehr: MiniEhr, alg: str) -> None:
    url = discovery(live)
    assert get(client, url, ehr.sign(url, alg=alg)).status_code == 200


def test_extra_claims_and_array_aud_are_tolerated(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = discovery(live)
    token = ehr.sign(["https://other.example", url], sub="client-1", nbf=int(time.time()) - 5, vendor="x")
    assert get(client, url, token).status_code == 200


def test_allowlisted_jku_is_accepted_without_fetching(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = discovery(live)
    token = ehr.sign(url, headers={"jku": "https://ehr.example.org/jwks.json"})
    assert get(client, url, token).status_code == 200


# Each case: (ehr, url) -> token or None, and the reason the log must give; every one is a bare 401.
REJECTED: dict[str, tuple[Callable[[MiniEhr, str], str | None], str]] = {
    "no-token": (lambda ehr, url: None, "no Authorization"),
    "alg-none": (lambda ehr, url: ehr.forge_unsigned(url), "'none' not allowed"),
    "hs256-with-ec-public-key": (
        lambda ehr, url: ehr.forge_hs256_with_public_key(url, "ES384"),
        "'HS256' not allowed",
    ),
    "hs256-with-rsa-public-key": (
        lambda ehr, url: ehr.forge_hs256_with_public_key(url, "RS384"),
        "'HS256' not allowed",
    ),
    # JSON that is not a string where a string belongs (found by the fuzzer: a list is unhashable)
    "alg-is-a-list": (lambda ehr, url: ehr.forge_header(url, alg=["ES384"]), "not allowed"),
    "jku-is-a-list": (lambda ehr, url: ehr.forge_header(url, jku=["https://ehr.example.org/jwks.json"]), "jku"),
    "wrong-aud": (lambda ehr, url: ehr.sign(url + "/other"), "aud"),
    "aud-of-another-host": (lambda ehr, url: ehr.sign(url.replace("127.0.0.1", "localhost")), "aud"),
    "expired": (lambda ehr, url: ehr.sign(url, exp=int(time.time()) - 120), "expired"),
    "iat-in-future": (
        lambda ehr, url: ehr.sign(url, iat=int(time.time()) + 600, lifetime_s=900),
        "iat in the future",
    ),
    "nbf-in-future": (lambda ehr, url: ehr.sign(url, nbf=int(time.time()) + 600), "nbf"),
    "lifetime-too-long": (lambda ehr, url: ehr.sign(url, lifetime_s=86_400), "lifetime"),
    "unknown-kid": (lambda ehr, url: ehr.sign(url, kid="not-in-jwks"), "unknown kid"),
    "kid-of-other-alg": (lambda ehr, url: ehr.sign(url, alg="RS384", kid=ehr.ec_kid), "does not fit"),
    "unknown-issuer": (lambda ehr, url: ehr.sign(url, iss="https://rogue.example"), "issuer not trusted"),
    "jku-not-allowlisted": (
        lambda ehr, url: ehr.sign(url, headers={"jku": "https://rogue.example/jwks.json"}),
        "jku",
    ),
    "no-jti": (lambda ehr, url: ehr.sign(url, jti=None), "jti missing"),
    "no-exp": (lambda ehr, url: ehr.sign(url, exp=None), "exp or iat"),
    "typ-not-jwt": (lambda ehr, url: ehr.sign(url, headers={"typ": "at+jwt"}), "typ"),
    "garbage": (lambda ehr, url: "not.a.jwt", "malformed"),
    "signed-by-stranger": (lambda ehr, url: MiniEhr(ehr.iss).sign(url, kid=ehr.ec_kid), "signature invalid"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_untrusted_token_is_bare_401(
    live: str, client: httpx.Client, ehr: MiniEhr, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = discovery(live)
    make_token, reason = REJECTED[case]
    with caplog.at_level(logging.WARNING, logger="hooks.jwt"):
        r = get(client, url, make_token(ehr, url))
    assert r.status_code == 401
    (record,) = [rec for rec in caplog.records if rec.name == "hooks.jwt"]
    assert reason in vars(record)["reason"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["code"] == "OV-3050"
    # The same answer whatever the reason: no detail for the caller.
    assert body == get(client, url, None).json()


def test_replayed_jti_is_401(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    url = discovery(live)
    token = ehr.sign(url)
    assert get(client, url, token).status_code == 200
    assert get(client, url, token).status_code == 401
    # Another token with the same jti is a replay too.
    first = ehr.sign(url, jti="fixed-jti-1")
    assert get(client, url, first).status_code == 200
    assert get(client, url, ehr.sign(url, jti="fixed-jti-1")).status_code == 401


def test_service_and_feedback_check_their_own_aud(live: str, client: httpx.Client, ehr: MiniEhr) -> None:
    service = f"{live}/cds-services/{SIGN}"
    feedback = f"{service}/feedback"
    body = order_sign_body()
    assert client.post(service, json=body, headers=ehr.auth(service)).status_code == 200
    assert client.post(service, json=body, headers=ehr.auth(discovery(live))).status_code == 401
    assert client.post(service, json=body, headers=ehr.auth(feedback)).status_code == 401
    fb = feedback_body("c")
    assert client.post(feedback, json=fb, headers=ehr.auth(feedback)).status_code == 200
    assert client.post(feedback, json=fb, headers=ehr.auth(service)).status_code == 200
    assert client.post(feedback, json=fb, headers=ehr.auth(discovery(live))).status_code == 401


def test_auth_comes_before_the_body(live: str, client: httpx.Client) -> None:
    url = f"{live}/cds-services/{SIGN}"
    r = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401
    assert client.post(f"{live}/cds-services/unknown", json={}).status_code == 401


@pytest.mark.parametrize(("tenant", "status"), [("tenant-a", 200), ("tenant-b", 401), (None, 401)])
def test_tenant_allowlist(
    live: str, client: httpx.Client, tenanted_ehr: MiniEhr, tenant: str | None, status: int
) -> None:
    url = discovery(live)
    assert tenanted_ehr.iss == TENANT_ISS
    assert get(client, url, tenanted_ehr.sign(url, tenant=tenant)).status_code == status


def test_rejection_is_logged_with_iss_jti_reason_never_token(
    live: str, client: httpx.Client, ehr: MiniEhr, caplog: pytest.LogCaptureFixture
) -> None:
    url = discovery(live)
    token = ehr.sign(url + "/wrong", jti="jti-for-log")
    with caplog.at_level(logging.WARNING, logger="hooks.jwt"):
        assert get(client, url, token).status_code == 401
    (record,) = [r for r in caplog.records if r.name == "hooks.jwt"]
    fields: dict[str, Any] = vars(record)
    assert (fields["iss"], fields["jti"]) == (ehr.iss, "jti-for-log")
    assert "aud" in fields["reason"]
    assert token not in str(fields) and token.split(".")[2] not in str(fields)


# -- the verifier alone, with a controlled clock ------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_leeway_and_replay_window_follow_the_clock(ehr: MiniEhr) -> None:
    clock = Clock()
    store = InMemoryReplayStore(clock=clock)
    verifier = JwtVerifier(ehr.jwt_config(leeway_s=30, replay_ttl_s=3600), store, clock=clock)
    aud = "https://cds.example.org/cds-services"
    token = ehr.sign(aud, exp=int(clock.now) + 60)
    client = await verifier.verify(f"Bearer {token}", [aud])
    assert client.iss == ehr.iss and client.alg == "ES384"

    clock.now += 85  # expired 25 s ago: inside the leeway, but the jti is remembered
    with pytest.raises(AuthenticationFailed) as replay:
        await verifier.verify(f"Bearer {token}", [aud])
    assert replay.value.reason == "jti replayed"

    clock.now += 10  # 35 s past exp: beyond the leeway
    with pytest.raises(AuthenticationFailed) as expired:
        await verifier.verify(f"Bearer {ehr.sign(aud, exp=int(clock.now) - 35)}", [aud])
    assert expired.value.reason == "token expired"

    clock.now += 3700  # past the replay window: old ids are purged
    await verifier.verify(f"Bearer {ehr.sign(aud, iat=int(clock.now), exp=int(clock.now) + 60)}", [aud])
    assert len(store) == 1


def test_pinned_jwks_must_hold_public_signing_keys(ehr: MiniEhr) -> None:
    private = dict(ehr.jwks()["keys"][0], d="secret")
    cases: dict[str, dict[str, Any]] = {
        "OV-3013": {"keys": [private]},
        "OV-3012": {"keys": []},
    }
    for code, jwks in cases.items():
        with pytest.raises(HooksConfigError) as err:
            JwtVerifier(JwtConfig({ehr.iss: IssuerTrust(jwks=jwks)}), InMemoryReplayStore())
        assert err.value.code == code
    hmac_key = {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}
    with pytest.raises(HooksConfigError, match="OV-3013"):
        JwtVerifier(JwtConfig({ehr.iss: IssuerTrust(jwks=hmac_key)}), InMemoryReplayStore())
    with pytest.raises(HooksConfigError, match="OV-3010"):
        JwtConfig({})


# -- which URL the aud must name ----------------------------------------------------------------------------
def build(ehr: MiniEhr, fake: FakeDecisions, **config: Any) -> FastAPI:
    verifier = JwtVerifier(ehr.jwt_config(), InMemoryReplayStore())
    return create_hooks_app(default_services(), fake, verifier, HooksConfig(environment="test", **config))


def test_aud_is_the_public_base_url_when_configured(ehr: MiniEhr, fake: FakeDecisions, client: httpx.Client) -> None:
    public = "https://cds.example.org/oncovigil"
    with serve(build(ehr, fake, public_base_url=public + "/")) as base:
        local = f"{base}/cds-services/{SIGN}"
        body = order_sign_body()
        assert client.post(local, json=body, headers=ehr.auth(f"{public}/cds-services/{SIGN}")).status_code == 200
        assert client.post(local, json=body, headers=ehr.auth(local)).status_code == 401
        fb = f"{public}/cds-services/{SIGN}/feedback"
        assert client.post(local + "/feedback", json=feedback_body("c"), headers=ehr.auth(fb)).status_code == 200


@pytest.mark.parametrize(("trust", "status"), [(True, 200), (False, 401)])
def test_forwarded_headers_only_when_trusted(
    ehr: MiniEhr, fake: FakeDecisions, client: httpx.Client, trust: bool, status: int
) -> None:
    with serve(build(ehr, fake, trust_forwarded_headers=trust)) as base:
        headers = {
            **ehr.auth("https://cds.example.org/cds-services"),
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "cds.example.org",
        }
        assert client.get(f"{base}/cds-services", headers=headers).status_code == status


def test_development_mode_without_jwt(fake: FakeDecisions, client: httpx.Client) -> None:
    app = create_hooks_app(default_services(), fake, None, HooksConfig(environment="development", require_jwt=False))
    with serve(app) as base:
        assert client.get(f"{base}/cds-services").status_code == 200
        r = client.post(f"{base}/cds-services/{SIGN}", json=order_sign_body())
        assert r.status_code == 200 and r.json()["cards"]
