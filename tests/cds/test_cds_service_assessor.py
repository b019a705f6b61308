"""The service with the order assessor the composition root really builds (``cds.assessor.build_assessor``).

Two deployments: without a recommender model (the overprescription rules alone) and with the recommender
that ``make models`` builds from the committed artifact (``var/models/recommender``), scoring every draft.
"""

from __future__ import annotations

import os
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

BUILT_MODELS = Path(__file__).resolve().parents[2] / "var" / "models"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120) as c:
        yield c


def _overprescription_cards(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Overprescription cards by the draft they suggest removing."""
    found: dict[str, dict[str, Any]] = {}
    for card in doc["cards"]:
        if card["source"]["topic"]["code"] == "overprescription":
            refs = {a["resourceId"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "delete"}
            assert len(refs) == 1, refs
            found[refs.pop()] = card
    return found


def _sign(seeded_sandbox: Any, tmp_path: Path, client: httpx.Client, **overrides: Any) -> tuple[Scenario, dict]:
    sc = prepare_scenario(seeded_sandbox.base_url)
    ehr = MiniEhr()
    settings = make_settings(tmp_path, [ehr], **overrides)
    with running_service(settings, build_assessor(settings)) as service:
        body = hook_body(
            "order-sign",
            sc.patient,
            draft_orders=drafts(sc.patient, sc.sign_drugs),
            fhir_server=seeded_sandbox.base_url,
        )
        r = post(client, ehr, service.url(SIGN), body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert spec_problems(doc) == []
    return sc, doc


def test_rules_alone_warn_about_the_drug_with_a_recorded_serious_event(
    seeded_sandbox: Any, tmp_path: Path, client: httpx.Client
) -> None:
    sc, doc = _sign(seeded_sandbox, tmp_path, client, models_dir=tmp_path / "no-models")
    cards = _overprescription_cards(doc)
    # draft-1 orders the drug with the recorded grade 3 event: a hard rule, whatever a model would say.
    first = cards["MedicationRequest/draft-1"]
    assert "rule-based" in first["detail"] and "grade 3" in first["detail"].lower()
    assert sc.ade_drug.display.lower() in first["summary"].lower() or sc.ade_drug.display in first["detail"]
    # Without a model, no draft is doubted for its score: the neutral drafts get no warning.
    assert set(cards) <= {"MedicationRequest/draft-1", "MedicationRequest/draft-2"}
    assert "prior-ade" in [c["source"]["topic"]["code"] for c in doc["cards"]]


def test_the_built_recommender_scores_the_drafts(seeded_sandbox: Any, tmp_path: Path, client: httpx.Client) -> None:
    if not (BUILT_MODELS / "recommender" / "model_card.json").is_file():
        if os.environ.get("CI") or os.environ.get("ONCOVIGIL_REQUIRE_SANDBOX") == "1":
            pytest.fail("var/models/recommender is not built: `make models` builds it from the committed artifact")
        pytest.skip("var/models/recommender is not built (run `make models`)")
    _, doc = _sign(seeded_sandbox, tmp_path, client, models_dir=BUILT_MODELS, onnx_threads=1)
    cards = _overprescription_cards(doc)
    first = cards["MedicationRequest/draft-1"]
    # The model scored the draft; the card names the hard rule unless the model doubts the drug too.
    assert "model score" in first["detail"]
    doubted = "below the" in first["detail"]  # the low_score reason's wording
    assert ("rule-based" not in first["summary"]) == doubted, first["summary"]
    assert all(ref.startswith("MedicationRequest/draft-") for ref in cards)
