"""Card builders: golden JSON, indicators, deterministic ids, summary length, Markdown safety.

Regenerate the golden files after an intended change with ``ONCOVIGIL_UPDATE_GOLDEN=1 pytest tests/hooks``.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hooks import AlternativeOrder, CdsResponse, PriorEvent, overprescription_card, prior_ade_card

GOLDEN = Path(__file__).parent / "golden"
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
ALTERNATIVE = AlternativeOrder(
    display="Granisetron 1 mg tablet",
    resource={
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/pat-1"},
        "medicationCodeableConcept": {"text": "Granisetron 1 mg tablet"},
    },
)


def check_golden(name: str, data: dict[str, Any]) -> None:
    path = GOLDEN / name
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    if os.environ.get("ONCOVIGIL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with ONCOVIGIL_UPDATE_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == data


def test_overprescription_card_golden() -> None:
    card = overprescription_card(
        "Ondansetron 8 mg tablet",
        "draft-1",
        ["Already on a 5-HT3 antagonist (palonosetron)", "Dose above the usual range for this regimen"],
        0.8731,
        ALTERNATIVE,
        hook_instance=HOOK_INSTANCE,
    )
    wire = CdsResponse(cards=[card]).to_wire()["cards"][0]
    check_golden("overprescription_card.json", wire)
    assert wire["indicator"] == "warning" and wire["selectionBehavior"] == "at-most-one"
    remove, replace = wire["suggestions"]
    assert remove["actions"] == [
        {
            "type": "delete",
            "description": "Remove the draft order for Ondansetron 8 mg tablet",
            "resourceId": "MedicationRequest/draft-1",
        }
    ]
    assert [a["type"] for a in replace["actions"]] == ["delete", "create"]
    assert all(r["display"] for r in wire["overrideReasons"])


def test_overprescription_without_alternative_only_removes() -> None:
    card = overprescription_card("Drug", "MedicationRequest/7", [], 0.6, hook_instance="h")
    (only,) = card.suggestions
    assert [a.resourceId for a in only.actions] == ["MedicationRequest/7"]
    assert only.actions[0].resource is None


def test_prior_ade_card_golden() -> None:
    events = [
        PriorEvent("peripheral sensory neuropathy", 3, date(2026, 9, 14), "DocumentReference/note-88"),
        PriorEvent("nausea", 1, "2026-08", None),
        PriorEvent("fatigue | malaise", None, None, "DocumentReference/note-91"),
    ]
    wire = prior_ade_card("Paclitaxel", events, hook_instance=HOOK_INSTANCE).to_wire()
    check_golden("prior_ade_card.json", wire)
    assert wire["indicator"] == "critical"
    assert wire["summary"] == "3 prior adverse events with Paclitaxel (worst grade 3)"
    assert "fatigue \\| malaise" in wire["detail"]  # a pipe would break the Markdown table
    assert "suggestions" not in wire and "selectionBehavior" not in wire


@pytest.mark.parametrize(("grades", "indicator"), [([1, 2], "info"), ([None], "info"), ([2, 4], "critical")])
def test_prior_ade_indicator_follows_worst_grade(grades: list[int | None], indicator: str) -> None:
    events = [PriorEvent("rash", g) for g in grades]
    assert prior_ade_card("Drug", events, hook_instance="h").indicator == indicator


def test_ids_are_deterministic_per_hook_instance() -> None:
    def build(hook_instance: str) -> list[str | None]:
        card = overprescription_card("Drug", "1", ["r"], 0.9, ALTERNATIVE, hook_instance=hook_instance)
        return [card.uuid] + [s.uuid for s in card.suggestions]

    assert build("a") == build("a")
    assert build("a")[0] != build("b")[0]
    assert len(set(build("a"))) == 3


def test_long_names_still_give_a_short_summary() -> None:
    card = overprescription_card("X" * 300, "1", ["r"], 0.9, hook_instance="h")
    assert len(card.summary) <= 139 and card.summary.endswith("…")
    ade = prior_ade_card("Y" * 300, [PriorEvent("rash", 2)], hook_instance="h")
    assert len(ade.summary) <= 139


def test_prior_ade_needs_events() -> None:
    with pytest.raises(ValueError, match="at least one"):
        prior_ade_card("Drug", [], hook_instance="h")


def test_a_hard_rule_warning_says_so_beside_the_model_score() -> None:
    args = ("Prednisone 20 mg", "MedicationRequest/draft-1", ["grade 3 insomnia recorded with prednisone"], 0.89)
    doubted = overprescription_card(*args, hook_instance="h")
    ruled = overprescription_card(*args, hook_instance="h", model_doubts=False)
    unscored = overprescription_card(*args[:3], float("nan"), hook_instance="h")
    assert doubted.summary.endswith("(model score 0.89)")
    assert ruled.summary.endswith("(rule-based; model score 0.89)")
    assert unscored.summary.endswith("(rule-based)")
