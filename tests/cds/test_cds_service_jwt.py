"""The EHR's JWT against the real app: each forgery or mistake is a 401 for its own reason, and the replay
store is the state database, so a second instance sharing it refuses a jti the first one accepted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_service_kit import (
    SEEDED_PATIENTS,
    SIGN,
    MiniEhr,
    Service,
    drafts,
    ehr_prefetch,
    hook_body,
    make_settings,
    running_service,
)

from cds.state import JtiRow, StateStore

PUBLIC_BASE = "https://cds.oncovigil.example"


@pytest.fixture(scope="module")
def ehr() -> MiniEhr:
    return MiniEhr()


@pytest.fixture(scope="module")
def body(seeded_sandbox: Any) -> dict[str, Any]:
    """An order-sign body with a full prefetch read from the sandbox (so 200 needs no FHIR call)."""
    pid = SEEDED_PATIENTS[0]
    return hook_body(
        "order-sign", pid, draft_orders=drafts(pid, [("6851", "methotrexate")]),
        prefetch=ehr_prefetch(seeded_sandbox.base_url, pid),
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, ehr: MiniEhr) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("jwt"), [ehr])) as svc:
        yield svc


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as c:
        yield c


def send(client: httpx.Client, url: str, body: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(url, json=body, headers=headers)


def rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(r, "reason", "")) for r in caplog.records if r.getMessage() == "OV-3050: JWT rejected"]


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_tokens_are_accepted(
    service: Service, client: httpx.Client, ehr: MiniEhr, body: dict[str, Any], alg: str
) -> None:
    url = service.url(SIGN)
    r = send(client, url, body, ehr.sign(url, alg=alg))
    assert r.status_code == 200, r.text
    assert "cards" in r.json()


CASES: dict[str, tuple[Any, str]] = {
    # case: (how the EHR or attacker builds the token for url, the reason logged)
    "alg-none": (lambda e, url: e.forge_unsigned(url), "algorithm 'none' not allowed"),
    "hs256-with-public-key": (lambda e, url: e.forge_hs256_with_public_key(url), "algorithm 'HS256' not allowed"),
    "hs256-with-rsa-public-key": (
        lambda e, url: e.forge_hs256_with_public_key(url, alg="RS384"), "algorithm 'HS256' not allowed"
    ),
    "wrong-aud": (lambda e, url: e.sign(url.replace(SIGN, "oncovigil-order-select")), "is not the URL called"),
    "aud-of-another-host": (lambda e, url: e.sign("https://elsewhere.example/cds-services/" + SIGN), "not the URL"),
    "expired": (lambda e, url: e.sign(url, lifetime_s=-120), "token expired"),
    "unknown-kid": (lambda e, url: e.sign(url, kid="not-in-the-jwks"), "unknown kid"),
    "unknown-issuer": (lambda e, url: MiniEhr(iss="https://rogue.example").sign(url), "issuer not trusted"),
    "forged-iss-claim": (lambda e, url: MiniEhr().sign(url, kid=e.ec_kid), "signature invalid"),
    "no-jti": (lambda e, url: e.sign(url, jti=None), "jti"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_tokens_are_401_for_their_reason(
    service: Service, client: httpx.Client, ehr: MiniEhr, body: dict[str, Any], case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    build, reason = CASES[case]
    url = service.url(SIGN)
    with caplog.at_level(logging.INFO):
        r = send(client, url, body, build(ehr, url))
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["code"] == "OV-3050"
    logged = rejections(caplog)
    assert len(logged) == 1 and reason.casefold() in logged[0].casefold(), logged


def test_missing_token_is_401(service: Service, client: httpx.Client, body: dict[str, Any]) -> None:
    for url in (service.url(), service.url(SIGN), service.url(SIGN, feedback=True)):
        r = client.get(url) if url == service.url() else client.post(url, json=body)
        assert r.status_code == 401, url


def test_replayed_jti_is_401(
    service: Service, client: httpx.Client, ehr: MiniEhr, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    url = service.url(SIGN)
    token = ehr.sign(url)
    assert send(client, url, body, token).status_code == 200
    with caplog.at_level(logging.INFO):
        assert send(client, url, body, token).status_code == 401
    assert rejections(caplog) == ["jti replayed"]


def test_jti_replayed_against_a_second_instance_sharing_the_state_db_is_refused(
    tmp_path: Path, client: httpx.Client, ehr: MiniEhr, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Two replicas behind one public URL (so one ``aud`` fits both) and one state database."""
    settings = make_settings(tmp_path, [ehr], cds_public_base_url=PUBLIC_BASE)
    aud = f"{PUBLIC_BASE}/cds-services/{SIGN}"
    with running_service(settings) as first, running_service(settings) as second:
        assert first.base != second.base
        token = ehr.sign(aud)
        assert send(client, first.url(SIGN), body, token).status_code == 200
        with caplog.at_level(logging.INFO):
            r = send(client, second.url(SIGN), body, token)
        assert r.status_code == 401, r.text
        assert rejections(caplog) == ["jti replayed"]
        # the second replica is healthy: a fresh token is accepted, and then refused by the first
        fresh = ehr.sign(aud)
        assert send(client, second.url(SIGN), body, fresh).status_code == 200
        assert send(client, first.url(SIGN), body, fresh).status_code == 401

    store = StateStore(str(settings.state_db_url))
    try:
        with store.session() as s:
            assert s.query(JtiRow).count() == 2
    finally:
        store.close()
