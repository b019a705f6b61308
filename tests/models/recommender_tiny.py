"""A tiny random-init Llama with a byte-level BPE tokenizer, standing in for SmolLM2 in tests.

" yes" and " no" are single tokens (asserted), as the recommender requires; the weights are random, so
tests assert equivalences (cache vs full pass, torch vs ONNX) and pipeline shape, never accuracy.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "Patient year old female male Active conditions Previous medications Allergies History none recorded "
    "Candidate drug Is effective and safe for this patient now Answer yes no cancer lung breast prostate "
    "colon hypertension diabetes cisplatin carboplatin paclitaxel pembrolizumab ondansetron granisetron "
    "dexamethasone lisinopril metformin tamsulosin leuprolide pemetrexed filgrastim nausea grade cycle"
)


def build_tiny_base(folder: Path, seed: int = 0) -> Path:
    """Write config.json, model.safetensors and tokenizer files of a 2-layer Llama into ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<unk>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [f"{WORDS} yes no yes no Answer: yes Answer: no"] * 50 + [w for w in WORDS.split()]
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    for answer in (" yes", " no"):
        assert len(fast.encode(answer, add_special_tokens=False)) == 1, answer
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=0.3,  # large weights: P(yes) spreads over (0, 1), so equalities are not trivial
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
