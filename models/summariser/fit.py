"""Fit a summariser: SFT, then DPO, for a causal LM (LoRA on SmolLM2 or a user's decoder) or a small T5
trained from scratch; writes the artifact folder (``sft/``, ``dpo/``, ``summariser.json``, vocabulary).

Artifact layout: causal -> two LoRA adapters on the named base; seq2seq -> two whole tiny T5 folders with
their tokenizer (a byte-level BPE trained on the training texts, so any term or number can be written).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.adapter_files import save_adapter_files
from models.errors import TrainingError
from models.summariser.narrative import PROMPT_VERSION, narrate, render_prompt
from models.summariser.pairs import preference_pairs
from models.summariser.record import DrugGroup
from models.summariser.training import (
    Batcher,
    StageLog,
    SummariserTrainConfig,
    add_lora,
    reference_logprobs,
    train_dpo,
    train_sft,
)

log = logging.getLogger(__name__)

SETTINGS_FILE = "summariser.json"
VOCABULARY_FILE = "event_vocabulary.json"
STAGES = ("sft", "dpo")


@dataclass(frozen=True)
class FitConfig:
    train: SummariserTrainConfig
    base: str = "smollm2"
    d_model: int = 128
    layers: int = 2
    max_new_tokens: int = 160
    tokenizer_vocab: int = 1200
    # causal only: an SFT adapter folder to start from; SFT is skipped and only DPO runs (a DPO retune)
    resume_sft: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, arch: str, o: Mapping[str, float], base: str = "smollm2", resume_sft: str = "") -> FitConfig:
        train = SummariserTrainConfig(
            arch=arch,
            lora_r=int(o["lora_r"]),
            lora_alpha=2 * int(o["lora_r"]),
            lora_layers=int(o["lora_layers"]),
            sft_steps=int(o["sft_steps"]),
            sft_learning_rate=float(o["sft_lr"]),
            dpo_steps=int(o["dpo_steps"]),
            dpo_learning_rate=float(o["dpo_lr"]),
            dpo_beta=float(o["beta"]),
            dpo_sft_weight=float(o["sft_weight"]),
            batch_size=int(o["batch_size"]),
            seed=int(o["seed"]),
            threads=int(o["threads"]),
            max_seconds=float(o["max_seconds"]),
        )
        return cls(
            train=train,
            base=base,
            d_model=int(o["d_model"]),
            layers=int(o["layers"]),
            max_new_tokens=int(o["max_new_tokens"]),
            resume_sft=resume_sft,
        )


@dataclass(frozen=True)
class FitOutcome:
    pairs: int
    base_name: str
    base_source: str
    hyperparameters: dict[str, Any]


def write_settings(out_dir: Path, arch: str, base: str, max_new_tokens: int) -> None:
    settings = {
        "registry_name": "summariser.v1",
        "arch": arch,
        "base": base,
        "prompt_version": PROMPT_VERSION,
        "max_new_tokens": max_new_tokens,
    }
    (out_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_settings(directory: Path) -> dict[str, Any]:
    from models.errors import ModelLoadError
    from models.model_files import invalid, load_json_object

    path = directory / SETTINGS_FILE
    if not path.is_file():
        raise ModelLoadError(
            "OV-2101", f"{path} is missing or invalid; this is not a summariser directory (oncovigil train summariser)"
        )
    data = load_json_object(path, "OV-2101", _REBUILD)
    if data.get("arch") not in ("causal", "seq2seq"):
        raise ModelLoadError("OV-2101", f"{path}: arch must be causal or seq2seq, not {data.get('arch')!r}")
    max_new, pad, eos = data.get("max_new_tokens", 160), data.get("pad_token_id"), data.get("eos_token_id")
    eos_ok = eos is None or _whole(eos) or (isinstance(eos, list) and bool(eos) and all(_whole(e) for e in eos))
    if not (_whole(max_new) and max_new > 0 and (pad is None or _whole(pad)) and eos_ok):
        raise invalid(
            path, "OV-2101", "needs whole numbers for max_new_tokens, pad_token_id and eos_token_id", _REBUILD
        )
    return dict(data)


_REBUILD = (
    "rebuild it with `oncovigil models build` (an artifact: retrain with `oncovigil train summariser`), "
    "or check the file if the folder is your own"
)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fit_summariser(
    groups: Sequence[DrugGroup], vocabulary: Sequence[str], out_dir: Path, config: FitConfig
) -> FitOutcome:
    import torch

    cfg = config.train
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pairs = preference_pairs(groups, vocabulary, seed=cfg.seed)
    if cfg.arch == "causal":
        model, batcher, name, source, save = _causal(config)
    else:
        model, batcher, name, source, save = _seq2seq(groups, config)
    if config.resume_sft:
        sft = StageLog(extra={"resumed_from_existing_sft_adapter": 1.0})
        save(model, out_dir / "sft")
    else:
        # SFT gets 65 % of the time budget at most, so DPO always runs
        sft = train_sft(model, batcher, groups, cfg, started + 0.65 * cfg.max_seconds)
        save(model, out_dir / "sft")
    ref_started = time.perf_counter()
    # Records come corpus first, cohort last: shuffled, the pairs DPO sees are drawn from both (the cohort
    # holds most serious events, so most "dropped serious" pairs).
    random.Random(cfg.seed).shuffle(pairs)
    dpo_pairs = pairs[: max(1, cfg.dpo_steps * max(1, cfg.batch_size // 2))]  # only the pairs DPO will see
    reference = reference_logprobs(model, batcher, dpo_pairs, cfg.arch)
    ref_seconds = time.perf_counter() - ref_started
    dpo = train_dpo(model, batcher, dpo_pairs, reference, cfg, started + cfg.max_seconds)
    save(model, out_dir / "dpo")
    write_settings(out_dir, cfg.arch, config.base if cfg.arch == "causal" else "tiny-t5", config.max_new_tokens)
    (out_dir / VOCABULARY_FILE).write_text(json.dumps(sorted(set(vocabulary)), indent=0) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for p in dpo_pairs:
        counts[p.fault] = counts.get(p.fault, 0) + 1
    hyper = {
        **cfg.as_record(),
        "base": config.base if cfg.arch == "causal" else "tiny-t5 from scratch",
        "max_new_tokens": config.max_new_tokens,
        "sft": sft.as_record(),
        "dpo": {**dpo.as_record(), "pairs_by_fault": counts, "reference_seconds": round(ref_seconds, 1)},
        "total_seconds": round(time.perf_counter() - started, 1),
        "prompt_version": PROMPT_VERSION,
    }
    if cfg.arch == "seq2seq":
        hyper["t5"] = {"d_model": config.d_model, "layers": config.layers, "tokenizer_vocab": config.tokenizer_vocab}
    return FitOutcome(pairs=len(dpo_pairs), base_name=name, base_source=source, hyperparameters=hyper)


def _causal(config: FitConfig) -> tuple[Any, Batcher, str, str, Any]:
    from models.recommender.base import SMOLLM2, SMOLLM2_NAME, SMOLLM2_SOURCE, load_base

    base = load_base(config.base)
    tokenizer = base.backend
    if config.resume_sft:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base.model, config.resume_sft, is_trainable=True)
    else:
        model = add_lora(base.model, config.train)
    batcher = Batcher(
        "causal",
        lambda text: list(tokenizer.encode(text, add_special_tokens=False).ids),
        int(base.tokenizer.eos_token_id),
        int(base.tokenizer.pad_token_id),
        config.train,
    )

    is_default = config.base == SMOLLM2
    name = SMOLLM2_NAME if is_default else base.name

    def save(m: Any, target: Path) -> None:
        save_adapter_files(m, target, name)

    return model, batcher, name, SMOLLM2_SOURCE if is_default else config.base, save


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE with T5's special ids (pad 0, eos 1, unk 2), wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )


def _seq2seq(groups: Sequence[DrugGroup], config: FitConfig) -> tuple[Any, Batcher, str, str, Any]:
    from transformers import T5Config, T5ForConditionalGeneration

    texts = [render_prompt(g) for g in groups] + [narrate(g) for g in groups]
    tokenizer = train_tokenizer(texts, config.tokenizer_vocab)
    pad, eos = int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)
    if (pad, eos) != (0, 1):
        raise TrainingError("OV-2102", f"tiny T5 tokenizer has pad {pad} / eos {eos}; expected 0 / 1")
    t5 = T5Config(  # type: ignore[no-untyped-call]
        vocab_size=len(tokenizer),
        d_model=config.d_model,
        d_kv=config.d_model // 4,
        d_ff=2 * config.d_model,
        num_layers=config.layers,
        num_decoder_layers=config.layers,
        num_heads=4,
        relative_attention_num_buckets=32,
        dropout_rate=0.0,
        decoder_start_token_id=pad,
        pad_token_id=pad,
        eos_token_id=eos,
        tie_word_embeddings=True,
    )
    model = T5ForConditionalGeneration(t5)
    batcher = Batcher(
        "seq2seq", lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"]), eos, pad, config.train
    )

    def save(m: Any, target: Path) -> None:
        m.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))

    return model, batcher, "tiny T5 (random init, trained from scratch)", "transformers T5Config", save
