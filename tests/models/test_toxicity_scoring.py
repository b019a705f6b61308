"""Toxicity metrics, head layout and decoding, note windows and the notes.jsonl reader (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.errors import DataFormatError
from models.toxicity import (
    DEFAULT_SYMPTOMS,
    HeadLayout,
    decode_note,
    macro_f1,
    notes_from_records,
    predict_notes,
    read_notes,
    toxicity_metrics,
)
from models.toxicity.head import note_windows

LAYOUT = HeadLayout(("fatigue", "diarrhea"))


def row(status: dict[str, int], grade: dict[str, int] | None = None) -> np.ndarray:
    """A logit row that puts a big logit on the given status (and grade class) of each symptom."""
    out = np.zeros(LAYOUT.width, dtype=np.float32)
    for k, symptom in enumerate(LAYOUT.symptoms):
        out[k * 3 + status[symptom]] = 8.0
        out[LAYOUT.grade_offset + k * 6 + (grade or {}).get(symptom, 0)] = 8.0
    return out


def test_layout_labels_round_trip_and_reject_foreign_heads() -> None:
    labels = LAYOUT.labels()
    assert labels[:3] == ["status:fatigue:present", "status:fatigue:absent", "status:fatigue:not_mentioned"]
    assert labels[LAYOUT.grade_offset] == "grade:fatigue:none" and len(labels) == LAYOUT.width == 18
    assert HeadLayout.from_labels(labels) == LAYOUT
    with pytest.raises(DataFormatError):
        HeadLayout.from_labels(["O", "B-DRUG"])
    with pytest.raises(DataFormatError):
        HeadLayout(("fatigue", "fatigue"))
    assert len(HeadLayout(DEFAULT_SYMPTOMS).labels()) == 12 * 9


def test_one_window_decodes_to_its_argmax_with_grade_only_when_present() -> None:
    findings = decode_note(row({"fatigue": 0, "diarrhea": 1}, {"fatigue": 2, "diarrhea": 3})[None, :], LAYOUT)
    assert [(f.symptom, f.status, f.grade) for f in findings] == [
        ("fatigue", "present", 2),
        ("diarrhea", "absent", None),
    ]
    assert findings[0].confidence > 0.99
    ungraded = decode_note(row({"fatigue": 0, "diarrhea": 2})[None, :], LAYOUT)
    assert (ungraded[0].grade, ungraded[1].status) == (None, "not_mentioned")


def test_windows_combine_so_a_mention_anywhere_wins_over_silence() -> None:
    rows = np.stack(
        [
            row({"fatigue": 2, "diarrhea": 2}),
            row({"fatigue": 0, "diarrhea": 2}, {"fatigue": 3}),
            row({"fatigue": 2, "diarrhea": 1}),
        ]
    )
    findings = decode_note(rows, LAYOUT)
    assert [(f.status, f.grade) for f in findings] == [("present", 3), ("absent", None)]


def test_notes_are_read_sentence_by_sentence_and_reassembled() -> None:
    def count(text: str) -> int:
        return len(text.split())

    text = "Fatigue grade 2 today.\nGI: denies diarrhea. Plan " + "word " * 12 + "end."
    windows = note_windows(text, count, 8)
    pieces = [text[a:b] for a, b in windows]
    assert pieces[:2] == ["Fatigue grade 2 today.", "GI: denies diarrhea."]
    assert len(pieces) == 4 and all(count(p) <= 8 for p in pieces)  # the long sentence is cut on whitespace
    assert note_windows("  \n ", count, 8) == []
    seen: list[str] = []

    def logits(pieces: list[str]) -> np.ndarray:
        seen.extend(pieces)
        rows = [row({"fatigue": 0 if "Fatigue" in p else 2, "diarrhea": 1 if "diarrhea" in p else 2}) for p in pieces]
        return np.stack(rows)

    out = predict_notes([text, "", "No new complaints."], logits, count, 8, LAYOUT)
    assert [f.status for f in out[0]] == ["present", "absent"]
    assert [f.status for f in out[1]] == ["not_mentioned", "not_mentioned"]
    assert [f.status for f in out[2]] == ["not_mentioned", "not_mentioned"]
    assert len(seen) == len(windows) + 1  # the blank note costs no model call


def test_macro_f1_and_the_contract_keys() -> None:
    assert macro_f1([("present", "present"), ("absent", "absent")]) == 1.0
    assert macro_f1([("present", "absent")]) == 0.0
    gold = [
        {"fatigue": ("present", 2), "diarrhea": ("absent", None)},
        {"fatigue": ("not_mentioned", None), "diarrhea": ("present", None)},
    ]
    predicted = [
        {"fatigue": ("present", 1), "diarrhea": ("absent", None)},
        {"fatigue": ("not_mentioned", None), "diarrhea": ("not_mentioned", None)},
    ]
    metrics = toxicity_metrics(gold, predicted, LAYOUT.symptoms)
    assert set(metrics) >= {"macro_f1", "accuracy", "per_symptom", "grade_accuracy"}
    assert set(metrics["per_symptom"]) == {"fatigue", "diarrhea"}
    assert metrics["per_symptom"]["fatigue"] == {"accuracy": 1.0, "f1": 1.0, "support_present": 1.0}
    # diarrhea: absent right (F1 1), present missed (F1 0), not_mentioned predicted wrongly (F1 0)
    assert metrics["per_symptom"]["diarrhea"]["f1"] == pytest.approx(1 / 3)
    assert metrics["macro_f1"] == pytest.approx((1 + 1 / 3) / 2)
    assert metrics["accuracy"] == pytest.approx(3 / 4)
    assert metrics["grade_accuracy"] == 0.0  # the one stated grade (2) was predicted as 1


def record(kind: str = "radiotherapy", **override: object) -> dict[str, object]:
    tox = {s: {"status": "not_mentioned", "grade": None} for s in DEFAULT_SYMPTOMS}
    tox["fatigue"] = {"status": "present", "grade": 2, "span": [0, 7]}
    base: dict[str, object] = {"note_id": "n1", "kind": kind, "text": "Fatigue grade 2.", "toxicities": tox}
    base.update(override)
    return base


def test_only_radiotherapy_notes_are_read(tmp_path: Path) -> None:
    notes = notes_from_records([record(), record(kind="progress")], DEFAULT_SYMPTOMS)
    assert len(notes) == 1 and notes[0].truth["fatigue"].grade == 2
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [record(kind="consult"), record()]) + "\n", encoding="utf-8")
    assert [n.note_id for n in read_notes(path, DEFAULT_SYMPTOMS)] == ["n1"]


def test_bad_note_files_are_user_errors(tmp_path: Path) -> None:
    only_progress = tmp_path / "progress.jsonl"
    only_progress.write_text(json.dumps(record(kind="progress")) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="OV-2072"):
        read_notes(only_progress, DEFAULT_SYMPTOMS)
    with pytest.raises(DataFormatError, match="OV-2072"):
        read_notes(tmp_path / "missing.jsonl", DEFAULT_SYMPTOMS)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{oops\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"garbage\.jsonl:1"):
        read_notes(garbage, DEFAULT_SYMPTOMS)
    with pytest.raises(DataFormatError, match="OV-2073"):
        notes_from_records([record(toxicities={"fatigue": {"status": "maybe"}})], DEFAULT_SYMPTOMS)
    with pytest.raises(DataFormatError, match="OV-2073"):
        notes_from_records([record(text=None)], DEFAULT_SYMPTOMS)
