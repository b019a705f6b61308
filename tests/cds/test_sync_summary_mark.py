"""The state behind summaries after a crash: which drugs have findings newer than the last summary write."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from cds.state import StateStore


def _row(key: str, note: str, rxnorm: str | None) -> dict[str, object]:
    return {"key": key, "kind": "ade", "patient_id": "p", "note_id": note, "drug_rxnorm": rxnorm,
            "payload": {"ctcae_term": "Nausea", "grade": 2, "date": "2026-01-02"}, "model": "m@1"}


def test_drugs_with_findings_since_a_mark(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.replace_note_findings("n1", "ade", [_row("k1", "n1", "2555"), _row("k2", "n1", None)])
    assert store.finding_drugs_since("ade", None) == {"2555"}
    time.sleep(0.01)
    mark = datetime.now(UTC)
    assert store.finding_drugs_since("ade", mark) == set()
    time.sleep(0.01)
    store.replace_note_findings("n2", "ade", [_row("k3", "n2", "56946")])
    assert store.finding_drugs_since("ade", mark) == {"56946"}
    # a note extracted again after the mark counts as new again
    store.replace_note_findings("n1", "ade", [_row("k1", "n1", "2555")])
    assert store.finding_drugs_since("ade", mark) == {"2555", "56946"}
    assert store.finding_drugs_since("toxicity", None) == set()
    store.close()
