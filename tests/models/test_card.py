"""Model cards: every file hashed; a tampered, missing or unlisted directory is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import ModelCard, ModelIntegrityError, ModelLoadError, read_card, verify_dir, write_card


def _card() -> ModelCard:
    return ModelCard(
        name="ade-extractor.v1",
        task="ade",
        version="1",
        labels=["O", "B-DRUG"],
        base_model="tiny",
        base_model_source="test",
        dev_metrics={"pair_f1": 0.5},
    )


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"\x08\x01graph")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "vocab.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    write_card(tmp_path, _card())
    return tmp_path


def test_card_lists_every_file_and_verifies(model_dir: Path) -> None:
    card = verify_dir(model_dir)
    assert set(card.files) == {"model.onnx", "sub/vocab.txt"}
    assert all(len(h) == 64 for h in card.files.values())
    assert card.dev_metrics == {"pair_f1": 0.5}
    assert read_card(model_dir).created == card.created


def test_tampered_file_is_refused(model_dir: Path) -> None:
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (model_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"OV-2022.*model\.onnx"):
        verify_dir(model_dir)


def test_missing_file_is_refused(model_dir: Path) -> None:
    (model_dir / "sub" / "vocab.txt").unlink()
    with pytest.raises(ModelIntegrityError, match="OV-2021"):
        verify_dir(model_dir)


def test_directory_without_card_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="OV-2003"):
        verify_dir(tmp_path)


def test_card_without_hashes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model_card.json").write_text(_card().model_dump_json(), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="OV-2020"):
        verify_dir(tmp_path)
