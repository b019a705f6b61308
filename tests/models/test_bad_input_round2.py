"""Bad input, round 2: every malformed file or setting below is a coded error, never a crash or a quiet score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from models.ade.corpus import read_corpus, read_rel
from models.card import read_card
from models.errors import DataFormatError, ModelLoadError, ProviderError
from models.phenotype.data import parse_record
from models.runtime import CPU, CUDA, load_model_dir_session
from models.summariser.record import DrugGroup

SENTENCE = "Nausea developed after cisplatin was given."
# Document offsets: the sentence starts at 100 in its abstract.
GOOD_REL = f"1|{SENTENCE}|Nausea|100|106|cisplatin|123|132"


def _rel(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "DRUG-AE.rel"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_good_rel_line_is_read(tmp_path: Path) -> None:
    (sentence,) = read_rel(_rel(tmp_path, GOOD_REL))
    assert sentence.pairs == {((23, 32), (0, 6))}


@pytest.mark.parametrize(
    "line",
    [
        f"1|{SENTENCE}|Nausea|100|xx|cisplatin|123|132",
        f"1|{SENTENCE}|Nausea|100|106|cisplatin|123|",
        f"1|{SENTENCE}|Nausea|1e2|106|cisplatin|123|132",
    ],
)
def test_non_integer_offset_names_the_line(tmp_path: Path, line: str) -> None:
    path = _rel(tmp_path, GOOD_REL, line)
    with pytest.raises(DataFormatError, match=r"OV-2061: .*DRUG-AE.rel:2: .*integers"):
        read_rel(path)


@pytest.mark.parametrize(
    "line",
    [
        f"1|{SENTENCE}|Nausea|100|105|cisplatin|123|132",  # end one short
        f"1|{SENTENCE}|Nausea|100|106|cisplatin|132|123",  # end before begin
        f"1|{SENTENCE}|Nausea|-6|0|cisplatin|123|132",  # negative
    ],
)
def test_offsets_that_do_not_span_the_string_name_the_line(tmp_path: Path, line: str) -> None:
    with pytest.raises(DataFormatError, match=r"OV-2195: .*DRUG-AE.rel:1: "):
        read_rel(_rel(tmp_path, line))


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (f"1|{SENTENCE}|Vomiting|100|108|cisplatin|123|132", "effect 'Vomiting'"),
        (f"1|{SENTENCE}|Nausea|100|106|carboplatin|123|134", "drug 'carboplatin'"),
    ],
)
def test_string_not_in_its_sentence_is_refused_not_dropped(tmp_path: Path, line: str, what: str) -> None:
    with pytest.raises(DataFormatError, match=rf"OV-2196: .*DRUG-AE.rel:2: {what} does not occur"):
        read_rel(_rel(tmp_path, GOOD_REL, line))


def test_real_corpus_reads_without_dropping() -> None:
    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ade_corpus_v2"
    if not (corpus / "DRUG-AE.rel").is_file():
        pytest.skip("ADE-Corpus-V2 is not on this machine")
    sentences = read_corpus(corpus)
    positives = [s for s in sentences if s.pairs]
    # Measured when OV-2195/OV-2196 were added: 5388 lines, none failing either check.
    assert sum(len(s.pairs) for s in positives) == 5388
    assert len(sentences) == 16644


@pytest.mark.parametrize("value", [{"a": [1]}, 3, 1.5, True, ["x"]])
def test_phenotype_truth_value_must_be_string_or_null(value: Any) -> None:
    from models.phenotype.labels import FIELDS

    record = {"text": "note", "truth": {FIELDS[0]: value}}
    with pytest.raises(DataFormatError, match=r"OV-2121: notes.jsonl:4: truth values must be strings or null"):
        parse_record(record, "notes.jsonl:4")


def test_phenotype_string_and_null_truth_still_read() -> None:
    from models.phenotype.labels import FIELDS

    note = parse_record({"text": "note", "truth": {FIELDS[0]: "x", FIELDS[1]: None}}, "w")
    assert note.truth[FIELDS[0]] == "x"
    assert note.truth[FIELDS[1]] is None


def _group() -> dict[str, Any]:
    return {
        "drug": "cisplatin",
        "rxnorm": "2555",
        "period_start": "2025-01-01",
        "period_end": "2025-12-31",
        "patients": 2,
        "reports": 3,
        "terms": [{"term": "Nausea", "reports": 3, "patients": 2, "grades": {"1": 2, "3": 1}, "serious": 1}],
        "median_days_to_onset": 4.0,
        "evidence": [{"note_id": "n1", "term": "Nausea", "span": [0, 6]}],
    }


def test_grouped_record_round_trips() -> None:
    group = DrugGroup.from_json(_group())
    assert DrugGroup.from_json(json.loads(json.dumps(group.to_json()))) == group


@pytest.mark.parametrize(
    "record",
    [
        [1],
        "x",
        None,
        {**_group(), "evidence": ["x"]},
        {**_group(), "terms": ["Nausea"]},
        {**_group(), "patients": json.loads("1e999")},
        {**_group(), "patients": 2.7},
        {**_group(), "reports": True},
        {**_group(), "median_days_to_onset": float("nan")},
        {**_group(), "evidence": [{"note_id": "n1", "term": "Nausea", "span": [0, 1e999]}]},
    ],
)
def test_malformed_grouped_record_is_a_data_error(record: Any) -> None:
    with pytest.raises(DataFormatError, match="OV-2100"):
        DrugGroup.from_json(record)


def _hf_dir(tmp_path: Path, config: str, weights: bytes | None) -> Path:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(config, encoding="utf-8")
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def _bert_config() -> str:
    from transformers import BertConfig

    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    return str(config.to_json_string())


@pytest.mark.parametrize(
    ("config", "weights"),
    [
        (None, b"garbage"),  # SafetensorError
        (None, b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a":1}' + b"x" * 16),  # SafetensorError, bad header
        ("not json{", None),  # OSError
        ('{"model_type": "nosuchtype"}', None),  # ValueError
        (None, None),  # OSError: no weights file
        ("[1]", None),  # TypeError inside transformers unless checked first
    ],
)
def test_broken_hugging_face_dir_is_a_load_error(tmp_path: Path, config: str | None, weights: bytes | None) -> None:
    from models.encoder_export import export_user_hf_dir

    folder = _hf_dir(tmp_path, _bert_config() if config is None else config, weights)
    with pytest.raises(ModelLoadError, match=rf"OV-2197: .*{folder.name}"):
        export_user_hf_dir(folder, tmp_path / "out", "token-classification", ["a text"])
    assert not (tmp_path / "out").exists()


def _tiny_dir(tmp_path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    return tmp_path


@pytest.mark.parametrize("providers", [("Nope",), ("Nope", CPU), (CUDA, "cpu")])
def test_unknown_provider_name_is_refused_with_the_known_names(tmp_path: Path, providers: tuple[str, ...]) -> None:
    with pytest.raises(ProviderError, match=r"OV-2198: .*known names: .*CPUExecutionProvider"):
        load_model_dir_session(_tiny_dir(tmp_path), providers)


def test_empty_provider_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="OV-2030"):
        load_model_dir_session(_tiny_dir(tmp_path), ())


def test_cuda_named_still_falls_back_to_cpu_when_unusable(tmp_path: Path) -> None:
    loaded = load_model_dir_session(_tiny_dir(tmp_path), (CUDA, CPU))
    assert loaded.provider == loaded.session.get_providers()[0]


def test_invalid_card_names_the_failing_fields(tmp_path: Path) -> None:
    card = {"name": "x", "task": 3, "labels": "nope", "files": {"a": 1}}
    (tmp_path / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="OV-2004") as info:
        read_card(tmp_path)
    message = str(info.value)
    for field in ("task", "labels", "files.a", "version", "base_model", "base_model_source"):
        assert field in message
