"""The service with the order assessor the composition root really builds (``cds.assessor.build_assessor``).

Skipped while ``build_assessor`` returns None (no recommender wired yet); then the service answers with
prior-ADE cards only, which the other end-to-end tests cover without an assessor double as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_service_kit import (
    SIGN,
    MiniEhr,
    Scenario,
    drafts,
    hook_body,
    make_settings,
    post,
    prepare_scenario,
    running_service,
    spec_problems,
)

from cds.assessor import build_assessor


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as c:
        yield c


def test_order_sign_with_the_real_assessor(
    seeded_sandbox: Any, tmp_path: Path, client: httpx.Client
) -> None:
    sc: Scenario = prepare_scenario(seeded_sandbox.base_url)
    ehr = MiniEhr()
    settings = make_settings(tmp_path, [ehr])
    assessor = build_assessor(settings)
    if assessor is None:
        pytest.skip("cds.assessor.build_assessor returns None: no recommender wired into the service yet")
    with running_service(settings, assessor) as service:
        body = hook_body("order-sign", sc.patient, draft_orders=drafts(sc.patient, sc.sign_drugs),
                         fhir_server=seeded_sandbox.base_url)
        r = post(client, ehr, service.url(SIGN), body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert spec_problems(doc) == []
    topics = [c["source"]["topic"]["code"] for c in doc["cards"]]
    assert "prior-ade" in topics  # the real path still reports the recorded grade 3 event
    for card in doc["cards"]:
        if card["source"]["topic"]["code"] == "overprescription":
            refs = {a.get("resourceId") for s in card["suggestions"] for a in s["actions"]}
            assert refs <= {f"MedicationRequest/draft-{i}" for i in range(1, 6)}, refs


def test_service_without_an_assessor_still_reports_prior_events(
    seeded_sandbox: Any, tmp_path: Path, client: httpx.Client
) -> None:
    """The deployment as ``oncovigil serve`` builds it today (assessor None): prior-ADE cards only."""
    sc = prepare_scenario(seeded_sandbox.base_url)
    ehr = MiniEhr()
    settings = make_settings(tmp_path, [ehr])
    with running_service(settings, build_assessor(settings)) as service:
        body = hook_body("order-sign", sc.patient, draft_orders=drafts(sc.patient, sc.sign_drugs),
                         fhir_server=seeded_sandbox.base_url)
        r = post(client, ehr, service.url(SIGN), body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert spec_problems(doc) == []
    topics = sorted(c["source"]["topic"]["code"] for c in doc["cards"])
    assert "prior-ade" in topics
    if build_assessor(settings) is None:
        assert topics == ["prior-ade"]
