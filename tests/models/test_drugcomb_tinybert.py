"""Helper (no tests): a tiny random-init BERT with a WordPiece tokenizer, standing in for MiniLM.

Stands in for MiniLM in the drugcomb and toxicity tests: same architecture family, same tokenizer
format, built in about a second. Random weights, so tests assert equivalences and shapes, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "patient reports denies no grade mild moderate severe urinary urgency frequency cystitis hematuria "
    "incontinence retention pain proctitis diarrhea rectal bleeding fatigue erectile dysfunction with "
    "the of and plus given cisplatin paclitaxel carboplatin gemcitabine response progression combination "
    "treatment weekly visit fractions pelvis completed loose stools dysuria tiredness blood urine << >> "
    "( ) , . : ; 1 2 3 4 5 ctcae gy radiation oncology note review symptom plan"
)


def build_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """config.json, model.safetensors and tokenizer.json of a 2-layer BERT (hidden 32) in ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    # The vocabulary is spelt out, not learnt: the WordPiece trainer breaks ties between these equally
    # frequent words in hash-map order, so each process got other tokens and ids, and another random model.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for w in WORDS.split() if w.isalnum()})
    characters = sorted({c for c in WORDS if not c.isspace()})
    pieces = specials + words + [c for c in characters if c not in words] + [f"##{c}" for c in characters]
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(pieces)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


def build_tiny_drugcomb(root: Path, docs: list[object], max_steps: int = 2) -> Path:
    """A weak drug-combination model on the tiny BERT (real train -> merge -> export path); its model folder."""
    from models.card import ModelCard, write_card
    from models.drugcomb import REGISTRY_NAME
    from models.drugcomb.build import build_drugcomb_dir
    from models.drugcomb.train import DrugCombTrainConfig, train_drugcomb

    base = build_tiny_bert(root / "base")
    drugs = root / "drugs.txt"
    drugs.write_text("Cisplatin\nPaclitaxel\nGemcitabine\nCarboplatin\n", encoding="utf-8")
    config = DrugCombTrainConfig(
        max_size=3, max_length=48, top_layers=1, mlp_hidden=16, lora_r=4, batch_size=2, max_steps=max_steps, threads=1
    )
    train_drugcomb(docs[:2], [], base, drugs, root / "artifact", config)  # type: ignore[arg-type]
    card = ModelCard(name=REGISTRY_NAME, task="drugcomb", version="0", base_model="tiny", base_model_source="test")
    write_card(root / "artifact", card)
    build_drugcomb_dir(root / "artifact", root / "model", int8=False, base_dir=base)
    return root / "model"
