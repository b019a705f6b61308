"""The committed default summariser (SmolLM2-135M + LoRA, built by ``make models``) on dev records with
several serious events: with fact-copy decoding every paragraph passes the guard and names every serious
event; copying several tokens per step changes no text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from models.summariser import DrugGroup, check_summary
from models.summariser.generator import load_summariser

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / "var" / "models" / "summaries"
DEV = ROOT / "models" / "artifacts" / "summariser" / "dev.jsonl"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    if not (BUILT / "model_card.json").is_file():
        if os.environ.get("CI") or os.environ.get("ONCOVIGIL_REQUIRE_SANDBOX") == "1":
            pytest.fail("var/models/summaries is not built: `make models` builds it from the committed artifact")
        pytest.skip("var/models/summaries is not built (run `make models`)")
    return BUILT


def _serious_groups(n: int) -> list[DrugGroup]:
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    groups = [DrugGroup.from_json(r["record"]) for r in rows]
    return sorted((g for g in groups if len(g.serious_terms) >= 2), key=lambda g: -len(g.serious_terms))[:n]


def test_fact_copy_states_every_serious_event_of_the_default_model(model_dir: Path) -> None:
    groups = _serious_groups(6)
    assert len(groups) == 6 and max(len(g.serious_terms) for g in groups) >= 3
    vocabulary = json.loads((model_dir / "event_vocabulary.json").read_text(encoding="utf-8"))
    summariser = load_summariser(model_dir, ["CPUExecutionProvider"], threads=2, batch_size=6)
    texts = summariser.summarise(groups)
    for group, text in zip(groups, texts, strict=True):
        report = check_summary(text, group, vocabulary)
        assert report.passed, (text, report)
        assert text.startswith(group.drug + ":")
    copied_one_by_one = load_summariser(model_dir, ["CPUExecutionProvider"], threads=2, batch_size=6)
    copied_one_by_one._generator._copy_width = 1  # type: ignore[attr-defined]
    assert copied_one_by_one.summarise(groups) == texts
