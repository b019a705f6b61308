"""Bad data files given to the readers in ``models`` are ``DataFormatError`` (CLI exit 2), never crashes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.ade.corpus import NEG_FILE, REL_FILE, read_corpus
from models.drugcomb.data import read_jsonl
from models.errors import DataFormatError
from models.phenotype.data import read_notes as read_phenotype_notes
from models.recommender.visits import read_visits
from models.text_files import jsonl_values
from models.toxicity.data import read_notes as read_toxicity_notes
from tests.cds.test_sync_kit import cli_env, run_cli

DRUGCOMB = {
    "doc_id": "d1",
    "sentence": "A and B",
    "spans": [{"span_id": 0, "text": "A", "start": 0, "end": 1}, {"span_id": 1, "text": "B", "start": 6, "end": 7}],
    "rels": [{"class": "COMB", "spans": [0, 1]}],
}
TOXICITY = {
    "kind": "radiotherapy",
    "note_id": "n1",
    "text": "Grade 2 fatigue.",
    "toxicities": {"fatigue": {"status": "present", "grade": 2, "span": [8, 15]}},
}
PHENOTYPE = {"text": "lung adenocarcinoma", "truth": {"site": "lung"}, "spans": [[0, 4, "SITE"]]}
VISIT = {"visit_id": "v1", "patient": {"age": 60, "sex": "F"}, "prescribed": ["cisplatin"]}

# reader, its file-level code, a good record
READERS: dict[str, tuple[Callable[[Path], object], str, dict[str, Any]]] = {
    "drugcomb": (read_jsonl, "OV-2070", DRUGCOMB),
    "toxicity": (lambda path: read_toxicity_notes(path, ("fatigue",)), "OV-2072", TOXICITY),
    "phenotype": (read_phenotype_notes, "OV-2121", PHENOTYPE),
    "recommender": (read_visits, "OV-2079", VISIT),
}


def _jsonl(path: Path, *records: Any) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_good_file_still_reads(name: str, tmp_path: Path) -> None:
    reader, _, good = READERS[name]
    assert reader(_jsonl(tmp_path / "good.jsonl", good))


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_file_that_is_not_utf8_names_the_file_and_line(name: str, tmp_path: Path) -> None:
    reader, code, good = READERS[name]
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(good).encode() + b'\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataFormatError, match=rf"{code}: .*latin1\.jsonl:2: not UTF-8 text .*must be UTF-8"):
        reader(path)


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_directory_is_reported_as_a_directory(name: str, tmp_path: Path) -> None:
    reader, code, _ = READERS[name]
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    with pytest.raises(DataFormatError, match=rf"{code}: .*data\.jsonl is a directory, not a file; pass .*\.jsonl"):
        reader(folder)


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_missing_file_is_a_user_error(name: str, tmp_path: Path) -> None:
    reader, code, _ = READERS[name]
    with pytest.raises(DataFormatError, match=rf"{code}: .*nowhere\.jsonl does not exist"):
        reader(tmp_path / "nowhere.jsonl")


def test_jsonl_values_keeps_line_numbers_and_records_with_unicode_line_separators(tmp_path: Path) -> None:
    path = tmp_path / "sep.jsonl"
    path.write_bytes(b'\n{"text": "a\xe2\x80\xa8b"}\r\n\n[1]\n')
    assert list(jsonl_values(path, "OV-2070", "a .jsonl file")) == [(2, {"text": "a\u2028b"}), (4, [1])]
    path.write_text('{"a": 1}\n' + "[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"OV-2071: .*sep\.jsonl:2: not valid JSON"):
        list(jsonl_values(path, "OV-2070", "a .jsonl file", line_code="OV-2071"))


@pytest.mark.parametrize(
    ("filename", "content", "pattern"),
    [
        (REL_FILE, b"1|caf\xe9 caused rash|rash|0|4|x|0|1\n", rf"OV-2060: .*{REL_FILE}:1: not UTF-8 text"),
        (NEG_FILE, b"1 NEG fine\n2 NEG caf\xe9\n", rf"OV-2062: .*{NEG_FILE}:2: not UTF-8 text"),
    ],
)
def test_ade_corpus_files_that_are_not_utf8(filename: str, content: bytes, pattern: str, tmp_path: Path) -> None:
    (tmp_path / REL_FILE).write_text("1|Rash after x.|Rash|0|4|x|11|12\n", encoding="utf-8")
    (tmp_path / NEG_FILE).write_text("2 NEG Nothing happened.\n", encoding="utf-8")
    assert len(read_corpus(tmp_path)) == 2
    (tmp_path / filename).write_bytes(content)
    with pytest.raises(DataFormatError, match=pattern):
        read_corpus(tmp_path)


@pytest.mark.parametrize(
    ("rels", "pattern"),
    [
        ([{"class": "COMB", "spans": [[0], [1]]}], r"'spans' must be a list of span_id integers, got \[\[0\], \[1\]\]"),
        ([{"class": "COMB", "spans": [0, True]}], r"'spans' must be a list of span_id integers"),
        ([{"class": "COMB", "spans": [0, 7]}], r"at least two known span ids"),
        ([{"class": "maybe", "spans": [0, 1]}], r"relation class 'maybe' is not one of POS, COMB, NEG"),
        (5, r"'rels' has type int; it must be a list"),
    ],
)
def test_drugcomb_relations_are_validated(rels: Any, pattern: str, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "rels.jsonl", DRUGCOMB, {**DRUGCOMB, "rels": rels})
    with pytest.raises(DataFormatError, match=rf"OV-2071: .*rels\.jsonl:2: .*{pattern}"):
        read_jsonl(path)


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ([PHENOTYPE], r"expected a JSON object per line, got list"),
        ({**PHENOTYPE, "spans": [[1, 2]]}, r"each span must be \[start, end, tag\]"),
        ({**PHENOTYPE, "spans": [["a", "b", "c"]]}, r"each span must be \[start, end, tag\]"),
        ({**PHENOTYPE, "spans": 5}, r"'spans' must be a list of \[start, end, tag\], got 5"),
        ({**PHENOTYPE, "spans": [[0, 99, "SITE"]]}, r"lies outside the text \(length 19\)"),
        ({**PHENOTYPE, "spans": [[-1, 4, "SITE"]]}, r"lies outside the text"),
    ],
)
def test_phenotype_lines_and_spans_are_validated(line: Any, pattern: str, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "notes.jsonl", PHENOTYPE, line)
    with pytest.raises(DataFormatError, match=rf"OV-2121: .*notes\.jsonl:2: .*{pattern}"):
        read_phenotype_notes(path)


def test_phenotype_spans_may_be_absent_or_null(tmp_path: Path) -> None:
    plain = {"text": "x", "truth": {}}
    notes = read_phenotype_notes(_jsonl(tmp_path / "notes.jsonl", plain, {**plain, "spans": None}))
    assert [n.spans for n in notes] == [(), ()]


@pytest.mark.parametrize("grade", [99, -1, 0, 6, 2.5, "2", True])
def test_toxicity_grades_outside_ctcae_1_to_5_are_rejected(grade: Any, tmp_path: Path) -> None:
    bad = {**TOXICITY, "toxicities": {"fatigue": {"status": "present", "grade": grade}}}
    path = _jsonl(tmp_path / "notes.jsonl", TOXICITY, bad)
    message = r"OV-2073: .*notes\.jsonl:2: .*grade must be a CTCAE grade 1\.\.5 or null"
    with pytest.raises(DataFormatError, match=message):
        read_toxicity_notes(path, ("fatigue",))


def test_toxicity_grades_1_to_5_and_null_are_valid(tmp_path: Path) -> None:
    records = [
        {**TOXICITY, "note_id": str(g), "toxicities": {"fatigue": {"status": "present", "grade": g}}}
        for g in (1, 2, 3, 4, 5, None)
    ]
    notes = read_toxicity_notes(_jsonl(tmp_path / "notes.jsonl", *records), ("fatigue",))
    assert [n.truth["fatigue"].grade for n in notes] == [1, 2, 3, 4, 5, None]


@pytest.mark.parametrize("age", ["old", float("inf")])
def test_recommender_patient_errors_name_the_line(tmp_path: Path, age: object) -> None:
    # json.dumps writes inf as Infinity, which json.loads reads back: int() of it overflows
    path = _jsonl(tmp_path / "visits.jsonl", VISIT, {**VISIT, "patient": {"age": age, "sex": "F"}})
    with pytest.raises(DataFormatError, match=r"OV-2076: .*visits\.jsonl:2: a visit's 'patient' lacks"):
        read_visits(path)


def test_cli_eval_exits_2_on_files_that_are_not_utf8(tmp_path: Path) -> None:
    """ade and recommender read the data before the model, so a placeholder model folder is enough."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"")
    visits = tmp_path / "visits.jsonl"
    visits.write_bytes(b'{"visit_id": "v1", "patient": {"age": 60, "sex": "caf\xe9"}}\n')
    corpus = tmp_path / "ade"
    corpus.mkdir()
    (corpus / REL_FILE).write_bytes(b"1|caf\xe9 caused rash|rash|0|4|x|0|1\n")
    (corpus / NEG_FILE).write_text("", encoding="utf-8")
    for task, data, code in (("recommender", visits, "OV-2079"), ("ade", corpus, "OV-2060")):
        done = run_cli(["eval", task, "--data", str(data), "--model", str(model), "--json"], cli_env(tmp_path / "home"))
        assert done.returncode == 2, done.stderr
        assert f"{code}: " in done.stderr and "not UTF-8" in done.stderr and done.stdout == ""
        assert "Traceback" not in done.stderr and "OV-0099" not in done.stderr
