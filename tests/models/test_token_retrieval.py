"""Token retrieval for the taggers on a tiny BERT through the real train -> export -> onnxruntime path: tokens
are indexed with their gold BIO labels from the tagger's own hidden states, a zero weight changes nothing, and
labelled sentences fix the weak tagger's spans (and the ADE pairs built on them) without retraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from models.ade import AdeExtractor
from models.ade.extractor import AdeConfig
from models.backbone import minilm_dir
from models.card import ModelCard, write_card
from models.encoder_export import build_encoder_dir
from models.encoder_infer import EncoderTokenizer, TokenClassifierRunner
from models.encoder_train import EncoderTrainConfig, SpanExample, train_token_classifier
from models.errors import DataFormatError, ModelLoadError
from models.runtime import CPU, load_session
from models.token_retrieval import RetrievalTokenRunner, TokenIndex, build_token_index
from tests.models.tiny_encoder import save_with_tokenizer

LABELS = ["O", "B-DRUG", "I-DRUG", "B-AE", "I-AE"]


def example(text: str, drug: str, event: str) -> SpanExample:
    d, e = text.index(drug), text.index(event)
    return SpanExample(text, ((d, d + len(drug), "DRUG"), (e, e + len(event), "AE")))


LABELLED = [
    example("Severe neutropenia after docetaxel.", "docetaxel", "neutropenia"),
    example("Cisplatin-induced ototoxicity was reported.", "Cisplatin", "ototoxicity"),
    example("A rash developed on carboplatin.", "carboplatin", "rash"),
]


def _tagger(root: Path, hidden: bool) -> TokenClassifierRunner:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, num_labels=len(LABELS),
    )  # fmt: skip
    base = root / "base"
    save_with_tokenizer(BertForTokenClassification(config), base, minilm_dir())
    train = EncoderTrainConfig(base_dir=base, base_name="tiny", max_len=32, max_steps=1, batch_size=2, lora_r=2)
    train_token_classifier(LABELLED[:1], ["DRUG", "AE"], train, root / "artifact")
    write_card(root / "artifact", ModelCard(name="t", task="ade", version="0", base_model="t", base_model_source="t"))
    texts = [e.text for e in LABELLED]
    build_encoder_dir(root / "artifact", root / "model", texts, hidden_output=hidden, int8=False, base_dir=base)
    session = load_session(root / "model" / "model.onnx", [CPU])
    return TokenClassifierRunner(session, EncoderTokenizer(root / "model" / "tokenizer.json", 32))


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> TokenClassifierRunner:
    return _tagger(tmp_path_factory.mktemp("tiny-tagger"), hidden=True)


def test_index_holds_every_token_with_its_gold_label(runner: TokenClassifierRunner, tmp_path: Path) -> None:
    index = build_token_index(runner, LABELS, LABELLED[:1])
    tokens = runner.run([LABELLED[0].text])[0]
    assert len(index) == len(tokens.offsets)
    text = LABELLED[0].text
    by_start = {a: LABELS[i] for (a, _), i in zip(tokens.offsets, index.label_ids, strict=True)}
    assert by_start[text.index("docetaxel")] == "B-DRUG" and by_start[text.index("neutropenia")] == "B-AE"
    assert by_start[0] == "O"  # "Severe" is not part of the corpus-style event span here
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)
    index.save(tmp_path / "index.npz")
    again = TokenIndex.load(tmp_path / "index.npz")
    assert again.labels == index.labels and np.array_equal(again.label_ids, index.label_ids)
    assert len(index.add(again)) == 2 * len(index)
    with pytest.raises(DataFormatError, match="OV-2126"):
        index.add(TokenIndex(("O",), index.vectors, index.label_ids))


def test_weight_zero_is_the_tagger_and_labelled_tokens_fix_its_pairs(runner: TokenClassifierRunner) -> None:
    index = build_token_index(runner, LABELS, LABELLED)
    texts = [e.text for e in LABELLED]
    plain = runner.run(texts)
    unchanged = RetrievalTokenRunner(runner, index, weight=0.0).run(texts)
    assert all(np.allclose(a.probs, b.probs) for a, b in zip(plain, unchanged, strict=True))

    def pairs(tagger: TokenClassifierRunner) -> list[set[tuple[str, str]]]:
        extractor = AdeExtractor(tagger, LABELS, None, AdeConfig(min_entity_confidence=0.0))
        found = extractor.predict(texts)
        return [{(t[f.drug_span[0] : f.drug_span[1]], t[f.event_span[0] : f.event_span[1]]) for f in fs}
                for t, fs in zip(texts, found, strict=True)]  # fmt: skip

    gold = [{(e.text[e.spans[0][0] : e.spans[0][1]], e.text[e.spans[1][0] : e.spans[1][1]])} for e in LABELLED]
    assert pairs(runner) != gold  # one training step: the tagger is weak
    assert pairs(RetrievalTokenRunner(runner, index, weight=0.9, k=1)) == gold


def test_a_tagger_without_hidden_states_is_refused(tmp_path: Path) -> None:
    plain = _tagger(tmp_path, hidden=False)
    index = TokenIndex(tuple(LABELS), np.zeros((0, 32), dtype=np.float32), np.zeros(0, dtype=np.int64))
    with pytest.raises(ModelLoadError, match="OV-2013"):
        RetrievalTokenRunner(plain, index, weight=0.5)
    with pytest.raises(ModelLoadError, match="OV-2013"):
        build_token_index(plain, LABELS, LABELLED)
