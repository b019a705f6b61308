"""A damaged file in a model directory is a ModelLoadError naming it, never a parser's own exception.

The directories are built here from small synthetic files (a one-node ONNX graph, a word-level tokenizer,
a random head) and have no model card, like a folder a user brings: nothing checks a hash before the loaders
parse each file.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models import DataFormatError, ModelError, ModelLoadError, RuntimeConfig, write_card
from models.ade import AdeExtractor, read_terms
from models.card import ModelCard, read_card
from models.drugcomb import load_drugcomb_extractor
from models.drugcomb.candidates import CLASS_LABELS
from models.drugcomb.retrieval import CandidateIndex
from models.model_files import load_npz, open_tokenizer
from models.phenotype import ENTITY_TYPES, PhenotypeExtractor
from models.recommender import load_recommender, read_settings
from models.recommender.baselines import read_baselines
from models.summariser.fit import read_settings as read_summariser_settings
from models.summariser.generator import CausalGenerator, Seq2SeqGenerator
from models.token_retrieval import TokenIndex
from models.toxicity import HeadLayout, load_toxicity_extractor
from models.toxicity.retrieval import RetrievalIndex
from tests.cds.test_sync_kit import cli_env, run_cli

CPU_ONLY = RuntimeConfig(providers=("CPUExecutionProvider",), threads=1)
NOT_UTF8 = b"\xff\xfe\x00 not text {"
NOT_JSON = b'{"labels": ['
LAYOUT = HeadLayout(("fatigue", "nausea"))


def _onnx(path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "t"])],
        [helper.make_tensor_value_info("logits", TensorProto.INT64, ["n", "t"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "fatigue": 4, "cisplatin": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


def _tagger_dir(directory: Path, labels: list[str]) -> Path:
    directory.mkdir()
    _onnx(directory / "model.onnx")
    _tokenizer(directory / "tokenizer.json")
    _json(directory / "config.json", {"id2label": {str(i): label for i, label in enumerate(labels)}})
    _json(directory / "encoder_task.json", {"max_len": 64})
    return directory


@pytest.fixture
def ade_dir(tmp_path: Path) -> Path:
    directory = _tagger_dir(tmp_path / "ade", ["O", "B-DRUG", "I-DRUG", "B-AE", "I-AE"])
    _onnx(directory / "embedder.onnx")
    (directory / "ctcae_terms.csv").write_text("term,meddra_code\nFatigue,10016256\nNausea,10028813\n")
    np.save(directory / "ctcae_vectors.npy", np.eye(2, 4, dtype=np.float32))
    return directory


def _pooled_dir(directory: Path, labels: list[str], extra: dict[str, Any]) -> Path:
    directory.mkdir()
    _onnx(directory / "model.onnx")
    _tokenizer(directory / "tokenizer.json")
    task = {"labels": labels, "pooling": "cls_mean", "max_len": 64, "mlp_hidden": 3, "top_layers": 0}
    _json(directory / "pooled_task.json", {**task, "base_model": "tiny", "extra": extra})
    rng = np.random.default_rng(0)
    head: dict[str, Any] = {"fc1.weight": rng.random((3, 8)), "fc1.bias": rng.random(3)}
    head |= {"fc2.weight": rng.random((len(labels), 3)), "fc2.bias": rng.random(len(labels))}
    np.savez(directory / "head.npz", **{k: v.astype(np.float32) for k, v in head.items()})
    return directory


@pytest.fixture
def toxicity_dir(tmp_path: Path) -> Path:
    return _pooled_dir(tmp_path / "toxicity", LAYOUT.labels(), {})


@pytest.fixture
def drugcomb_dir(tmp_path: Path) -> Path:
    directory = _pooled_dir(tmp_path / "drugcomb", list(CLASS_LABELS), {"drugcomb": {"threshold": 0.5}})
    (directory / "drugs.txt").write_text("cisplatin\npaclitaxel\n", encoding="utf-8")
    return directory


def _load_ade(directory: Path) -> Any:
    return AdeExtractor.load(directory, CPU_ONLY, verify=False)


def _refused(load: Callable[[], Any], path: Path, code: str, error: type[ModelError] = ModelLoadError) -> str:
    with pytest.raises(error) as caught:
        load()
    message = str(caught.value)
    assert caught.value.code == code and message.startswith(f"{code}: ")
    assert str(path) in message and "\n" not in message
    return message


# -- the folders load when intact (so each failure below is the damaged file's) ------------------------


def test_intact_synthetic_directories_load(ade_dir: Path, toxicity_dir: Path, drugcomb_dir: Path) -> None:
    ade = _load_ade(ade_dir)
    assert ade.labels[1] == "B-DRUG" and ade.ctcae is not None and len(ade.ctcae.terms) == 2
    assert load_toxicity_extractor(toxicity_dir, CPU_ONLY).symptoms == LAYOUT.symptoms
    assert load_drugcomb_extractor(drugcomb_dir, CPU_ONLY).lexicon.find("cisplatin")


# -- token classifiers (ADE, phenotype) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("tokenizer.json", b"garbage{", "OV-2008"),
        ("tokenizer.json", NOT_UTF8, "OV-2008"),
        ("tokenizer.json", b'{"version": "1.0"}', "OV-2008"),
        ("config.json", NOT_JSON, "OV-2009"),
        ("config.json", NOT_UTF8, "OV-2009"),
        ("config.json", b"[1, 2]", "OV-2009"),
        ("config.json", b'{"id2label": {"first": "O"}}', "OV-2009"),
        ("config.json", b'{"id2label": ["O", "B-DRUG"]}', "OV-2009"),
        ("encoder_task.json", NOT_JSON, "OV-2190"),
        ("encoder_task.json", b'{"max_len": "long"}', "OV-2190"),
        ("encoder_task.json", b"[" * 100_000, "OV-2190"),
        ("ctcae_terms.csv", NOT_UTF8, "OV-2191"),
        ("ctcae_terms.csv", b"name,code\nFatigue,1\n", "OV-2191"),
        ("ctcae_terms.csv", b"term,meddra_code\n", "OV-2191"),
        ("ctcae_terms.csv", b'term,meddra_code\n"' + b"x" * 200_000 + b'",1\n', "OV-2191"),
        ("ctcae_vectors.npy", b"garbage", "OV-2191"),
        ("ctcae_vectors.npy", b"PK\x03\x04 garbage", "OV-2191"),
    ],
)
def test_a_damaged_tagger_file_is_named(ade_dir: Path, name: str, content: bytes, code: str) -> None:
    (ade_dir / name).write_bytes(content)
    message = _refused(lambda: _load_ade(ade_dir), ade_dir / name, code)
    assert "oncovigil models build" in message and "your own" in message


def test_damaged_ctcae_vectors_of_every_kind_are_named(ade_dir: Path) -> None:
    path = ade_dir / "ctcae_vectors.npy"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 8])  # truncated
    assert "not fully written" in _refused(lambda: _load_ade(ade_dir), path, "OV-2191")
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "If you trust" not in _refused(lambda: _load_ade(ade_dir), path, "OV-2191")
    np.save(path, np.array(["Fatigue", "Nausea"]))
    _refused(lambda: _load_ade(ade_dir), path, "OV-2191")
    with path.open("wb") as fh:
        np.savez(fh, vectors=np.eye(2))
    assert "npz archive" in _refused(lambda: _load_ade(ade_dir), path, "OV-2191")


def test_a_damaged_phenotype_label_file_is_named(tmp_path: Path) -> None:
    labels = ["O"] + [f"{p}-{kind}" for kind in ENTITY_TYPES for p in ("B", "I")]
    directory = _tagger_dir(tmp_path / "phenotype", labels)
    assert PhenotypeExtractor.load(directory, CPU_ONLY, verify=False).labels == labels
    (directory / "config.json").write_bytes(NOT_JSON)
    _refused(lambda: PhenotypeExtractor.load(directory, CPU_ONLY, verify=False), directory / "config.json", "OV-2009")


def test_a_user_term_list_that_is_not_utf8_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "terms.csv"
    path.write_bytes(b"term,meddra_code\nFatigue\xff,1\n")
    assert ":2: not UTF-8" in _refused(lambda: read_terms(path), path, "OV-2064", DataFormatError)
    path.write_text("\ufeffTerm,MedDRA Code\nFatigue,10016256\n", encoding="utf-8")
    assert [t.term for t in read_terms(path)] == ["Fatigue"]


# -- pooled classifiers (toxicity, drugcomb) -------------------------------------------------------------


def _crc_damaged(whole: bytes) -> bytes:
    """The archive ``whole`` with a byte of its first member's array data flipped."""
    with zipfile.ZipFile(io.BytesIO(whole)) as archive:
        info = archive.infolist()[0]
    extra = int.from_bytes(whole[info.header_offset + 28 : info.header_offset + 30], "little")  # local header's own
    start = info.header_offset + 30 + len(info.filename) + extra
    data = bytearray(whole)
    data[start + 128 + 4] ^= 0xFF  # past the 128-byte .npy header, inside the numbers
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("pooled_task.json", NOT_JSON, "not valid JSON"),
        ("pooled_task.json", NOT_UTF8, "not UTF-8"),
        ("pooled_task.json", b'{"labels": []}', "not a valid task file"),
        ("pooled_task.json", b"null", "not an object"),
        ("tokenizer.json", b"garbage{", "not a valid tokenizer file"),
        ("head.npz", b"garbage", "not a readable .npz archive"),
        ("head.npz", b"PK\x03\x04 garbage", "not a readable .npz archive"),
    ],
)
def test_a_damaged_pooled_file_is_named(toxicity_dir: Path, name: str, content: bytes, problem: str) -> None:
    (toxicity_dir / name).write_bytes(content)
    message = _refused(lambda: load_toxicity_extractor(toxicity_dir, CPU_ONLY), toxicity_dir / name, "OV-2006")
    assert problem in message and "oncovigil models build" in message


def test_a_head_that_is_truncated_corrupt_or_the_wrong_shape_is_named(toxicity_dir: Path) -> None:
    path = toxicity_dir / "head.npz"
    whole = path.read_bytes()

    def refused() -> str:
        return _refused(lambda: load_toxicity_extractor(toxicity_dir, CPU_ONLY), path, "OV-2006")

    path.write_bytes(whole[: len(whole) // 2])
    refused()
    path.write_bytes(_crc_damaged(whole))
    assert "CRC" in refused()
    np.savez(path, weights=np.zeros(3))
    assert "fc1.weight" in refused()
    five: dict[str, Any] = {"fc1.weight": np.zeros((3, 8)), "fc1.bias": np.zeros(3)}
    five |= {"fc2.weight": np.zeros((5, 3)), "fc2.bias": np.zeros(5)}
    np.savez(path, **five)
    assert "5 outputs" in refused()


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("drugs.txt", b"cisplatin\n\xff\xfe\n", "OV-2018"),
        ("pooled_task.json", None, "OV-2006"),
    ],
)
def test_a_damaged_drugcomb_file_is_named(drugcomb_dir: Path, name: str, content: bytes | None, code: str) -> None:
    path = drugcomb_dir / name
    if content is None:  # a decoding setting that is no number
        task = json.loads(path.read_text(encoding="utf-8"))
        task["extra"]["drugcomb"]["threshold"] = "high"
        _json(path, task)
    else:
        path.write_bytes(content)
    _refused(lambda: load_drugcomb_extractor(drugcomb_dir, CPU_ONLY), path, code)


# -- recommender and summariser --------------------------------------------------------------------------


def test_damaged_recommender_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "baselines.json"
    assert read_baselines(tmp_path) is None
    for content in (NOT_JSON, NOT_UTF8, b'{"drug_counts": []}', b'{"drug_counts": {}, "condition_counts": {}}'):
        path.write_bytes(content)
        _refused(lambda: read_baselines(tmp_path), path, "OV-2192")
    counts = {"drug_counts": {"a": 1}, "condition_counts": {}, "pair_counts": {}}
    _json(path, {**counts, "k": "two", "visits": 1, "cooccurrence_threshold": 0.5})
    _refused(lambda: read_baselines(tmp_path), path, "OV-2192")
    settings = tmp_path / "recommender.json"
    for content in (NOT_JSON, NOT_UTF8, b"[]", b'{"threshold": 1' + b"0" * 400 + b', "base": "x"}'):
        settings.write_bytes(content)
        _refused(lambda: read_settings(tmp_path), settings, "OV-2019")


def test_a_recommender_tokenizer_that_matches_its_card_but_is_damaged_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "recommender"
    directory.mkdir()
    _onnx(directory / "model.onnx")
    _json(directory / "recommender.json", {"threshold": 0.5, "base": "tiny"})
    (directory / "tokenizer.json").write_bytes(b"garbage{")
    card = ModelCard(name="recommender.v1", task="recommender", version="1", base_model="tiny", base_model_source="t")
    write_card(directory, card)
    _refused(lambda: load_recommender(directory, CPU_ONLY), directory / "tokenizer.json", "OV-2193")


def test_damaged_summariser_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "summariser.json"
    for content in (NOT_JSON, NOT_UTF8, b"[]", b'{"arch": "causal", "max_new_tokens": "many"}'):
        path.write_bytes(content)
        _refused(lambda: read_summariser_settings(tmp_path), path, "OV-2101")
    _json(path, {"arch": "causal", "max_new_tokens": 16, "eos_token_id": [2], "pad_token_id": None})
    assert read_summariser_settings(tmp_path)["max_new_tokens"] == 16

    stage = tmp_path / "stage"
    stage.mkdir()
    _onnx(stage / "model.onnx")
    (stage / "tokenizer.json").write_bytes(NOT_UTF8)
    _refused(lambda: CausalGenerator(stage, ("CPUExecutionProvider",)), stage / "tokenizer.json", "OV-2194")
    _tokenizer(stage / "tokenizer.json")
    (stage / "config.json").write_bytes(NOT_JSON)
    _refused(lambda: CausalGenerator(stage, ("CPUExecutionProvider",)), stage / "config.json", "OV-2105")
    _refused(lambda: Seq2SeqGenerator(stage, ("CPUExecutionProvider",)), stage / "config.json", "OV-2105")
    _json(stage / "config.json", {"eos_token_id": "two"})
    _refused(lambda: CausalGenerator(stage, ("CPUExecutionProvider",)), stage, "OV-2105")


# -- the rest: model cards, refinement indexes, the helpers ---------------------------------------------


def test_a_model_card_that_is_not_utf8_is_an_invalid_card(tmp_path: Path) -> None:
    (tmp_path / "model_card.json").write_bytes(NOT_UTF8)
    _refused(lambda: read_card(tmp_path), tmp_path / "model_card.json", "OV-2004")


@pytest.mark.parametrize("index", [RetrievalIndex, TokenIndex, CandidateIndex])
def test_a_damaged_retrieval_index_is_a_data_error(tmp_path: Path, index: Any) -> None:
    path = tmp_path / "retrieval_index.npz"
    for content in (b"garbage", b"PK\x03\x04 garbage"):
        path.write_bytes(content)
        assert "oncovigil refine" in _refused(lambda: index.load(path), path, "OV-2124", DataFormatError)
    np.savez(path, vectors=np.zeros((2, 3)))
    assert "lacks" in _refused(lambda: index.load(path), path, "OV-2124", DataFormatError)


def test_retrieval_indexes_with_bad_names_or_rows_are_data_errors(tmp_path: Path) -> None:
    path = tmp_path / "retrieval_index.npz"
    np.savez(path, labels=np.array("not json"), vectors=np.zeros((2, 3)), label_ids=np.zeros(2, dtype=np.int64))
    assert "JSON list" in _refused(lambda: TokenIndex.load(path), path, "OV-2124", DataFormatError)
    np.savez(path, labels=np.array('["O"]'), vectors=np.zeros((2, 3)), label_ids=np.zeros(3, dtype=np.int64))
    assert "3 rows" in _refused(lambda: TokenIndex.load(path), path, "OV-2124", DataFormatError)
    np.savez(path, labels=np.array('["O"]'), vectors=np.zeros((2, 3)), label_ids=np.zeros(2, dtype=np.int64))
    assert TokenIndex.load(path).labels == ("O",)


def test_helpers_pass_our_own_errors_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the bare Exception tokenizers raises for a bad file is translated; a TypeError is a bug of ours."""
    import tokenizers

    def broken(_text: str) -> None:
        raise TypeError("a programming error")

    path = tmp_path / "tokenizer.json"
    _tokenizer(path)
    monkeypatch.setattr(tokenizers.Tokenizer, "from_str", broken)
    with pytest.raises(TypeError, match="programming error"):
        open_tokenizer(path, "OV-2008")
    monkeypatch.undo()
    assert open_tokenizer(path, "OV-2008").token_to_id("fatigue") == 4
    np.savez(tmp_path / "a.npz", x=np.arange(3))
    assert list(load_npz(tmp_path / "a.npz", "OV-2006", required=("x",))["x"]) == [0, 1, 2]


# -- the command line: a user's folder with a damaged file exits 2 with one line -------------------------


def test_eval_on_a_user_folder_with_a_damaged_tokenizer_exits_2(toxicity_dir: Path, tmp_path: Path) -> None:
    from cds.cohort import generate_cohort

    notes = [n.to_json() for n in generate_cohort(4, 11).notes]
    data = tmp_path / "notes.jsonl"
    data.write_text("\n".join(json.dumps(n) for n in notes) + "\n", encoding="utf-8")
    (toxicity_dir / "tokenizer.json").write_bytes(b"garbage{")
    command = ["eval", "toxicity", "--data", str(data), "--model", str(toxicity_dir), "--json"]
    done = run_cli(command, cli_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "OV-2006" in done.stderr and "tokenizer.json" in done.stderr and "OV-0099" not in done.stderr
