"""Greedy summary generation on the ONNX runtime, for either architecture.

- ``CausalGenerator``: our own decoding loop over the optimum ``text-generation-with-past`` graph on the
  shared runtime (``models.runtime.load_session``: the provider really taken is read back); numpy only.
  Prompts are left-padded into a batch, run once with an empty past, then one token per step over the
  returned keys and values until every row has written eos or ``max_new_tokens``.
- ``Seq2SeqGenerator``: optimum's ``ORTModelForSeq2SeqLM`` (encoder + merged decoder), ``generate`` greedy;
  it needs torch at run time, so the causal default stays torch-free.
Both take rendered prompts and return texts; batching is by prompt length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from models.errors import ModelLoadError
from models.runtime import CPU, DEFAULT_PROVIDERS, load_session
from models.summariser.fit import SETTINGS_FILE, read_settings
from models.summariser.narrative import render_prompt
from models.summariser.record import DrugGroup


class TextGenerator(Protocol):
    provider: str

    def generate_texts(self, prompts: Sequence[str]) -> list[str]: ...


class CausalGenerator:
    """Greedy decoding of a causal LM exported with past key values."""

    def __init__(
        self,
        stage_dir: Path,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int = 0,
        max_new_tokens: int = 160,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        batch_size: int = 8,
    ) -> None:
        from tokenizers import Tokenizer

        self._loaded = load_session(stage_dir / "model.onnx", providers, threads)
        self.provider = self._loaded.provider
        self._tokenizer = Tokenizer.from_file(str(stage_dir / "tokenizer.json"))
        config = json.loads((stage_dir / "config.json").read_text(encoding="utf-8"))
        eos = eos_token_id if eos_token_id is not None else config.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0]
        if eos is None:
            raise ModelLoadError("OV-2105", f"{stage_dir}: no eos token id in config.json or {SETTINGS_FILE}")
        self._eos = int(eos)
        self._pad = int(pad_token_id if pad_token_id is not None else self._eos)
        self._max_new = max_new_tokens
        self._batch = max(1, batch_size)
        inputs = {i.name: i for i in self._loaded.session.get_inputs()}
        self._layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
        if not self._layers or "position_ids" not in inputs:
            raise ModelLoadError(
                "OV-2106",
                f"{stage_dir / 'model.onnx'} is not a causal LM with past key values; export it with task "
                "text-generation-with-past",
            )
        first = inputs["past_key_values.0.key"]
        self._kv_heads, self._head_dim = int(first.shape[1]), int(first.shape[3])
        self._outputs = ["logits"] + [f"present.{i}.{k}" for i in range(self._layers) for k in ("key", "value")]

    def _batch_generate(self, rows: Sequence[list[int]]) -> list[list[int]]:
        batch, width = len(rows), max(len(r) for r in rows)
        ids = np.full((batch, width), self._pad, dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        for i, r in enumerate(rows):  # left padding: every row's next token sits at the same column
            ids[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
        positions = np.where(mask == 1, np.cumsum(mask, axis=1) - 1, 1).astype(np.int64)
        empty = np.zeros((batch, self._kv_heads, 0, self._head_dim), dtype=np.float32)
        feeds: dict[str, npt.NDArray[Any]] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        for i in range(self._layers):
            feeds[f"past_key_values.{i}.key"] = empty
            feeds[f"past_key_values.{i}.value"] = empty
        out: list[list[int]] = [[] for _ in rows]
        done = np.zeros(batch, dtype=bool)
        last = positions[:, -1]
        for _ in range(self._max_new):
            result = self._loaded.session.run(self._outputs, feeds)
            nxt = result[0][:, -1].argmax(axis=-1)
            for i in range(batch):
                if not done[i]:
                    if int(nxt[i]) == self._eos:
                        done[i] = True
                    else:
                        out[i].append(int(nxt[i]))
            if done.all():
                break
            nxt = np.where(done, self._pad, nxt)
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            last = last + 1
            feeds = {"input_ids": nxt[:, None].astype(np.int64), "attention_mask": mask, "position_ids": last[:, None]}
            for i in range(self._layers):
                feeds[f"past_key_values.{i}.key"] = result[1 + 2 * i]
                feeds[f"past_key_values.{i}.value"] = result[2 + 2 * i]
        return out

    def generate_texts(self, prompts: Sequence[str]) -> list[str]:
        encoded = [list(self._tokenizer.encode(p, add_special_tokens=False).ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        texts = [""] * len(prompts)
        for start in range(0, len(order), self._batch):
            chunk = order[start : start + self._batch]
            for i, tokens in zip(chunk, self._batch_generate([encoded[i] for i in chunk]), strict=True):
                texts[i] = self._tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return texts


class Seq2SeqGenerator:
    """Greedy decoding of an encoder-decoder (T5 family) through optimum's ORTModelForSeq2SeqLM."""

    def __init__(
        self,
        stage_dir: Path,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int = 0,
        max_new_tokens: int = 160,
        batch_size: int = 8,
    ) -> None:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSeq2SeqLM
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        provider = providers[0] if providers else CPU
        self._model = ORTModelForSeq2SeqLM.from_pretrained(
            str(stage_dir), provider=provider, session_options=options, use_cache=True
        )
        # optimum falls back to CPU silently when CUDA cannot start: read back what the session took
        self.provider = str(self._model.providers[0]) if getattr(self._model, "providers", None) else provider
        self._tokenizer = AutoTokenizer.from_pretrained(str(stage_dir))  # type: ignore[no-untyped-call]
        self._max_new = max_new_tokens
        self._batch = max(1, batch_size)

    def first_logits(self, input_ids: npt.NDArray[Any], attention_mask: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Logits of the first decoder step (the export's parity check)."""
        import torch

        start = torch.tensor([[self._model.config.decoder_start_token_id]] * input_ids.shape[0])
        out = self._model(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            decoder_input_ids=start,
        )
        result: npt.NDArray[Any] = out.logits[0, -1].detach().numpy()
        return result

    def generate_texts(self, prompts: Sequence[str]) -> list[str]:
        texts = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), self._batch):
            chunk = order[start : start + self._batch]
            enc = self._tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True)
            ids = self._model.generate(**enc, max_new_tokens=self._max_new, do_sample=False, num_beams=1)
            for i, text in zip(chunk, self._tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True):
                texts[i] = text.strip()
        return texts


class Summariser:
    """A generator plus its prompt format: ``summarise(groups)`` returns raw (unchecked) texts."""

    def __init__(self, generator: TextGenerator, name: str, stage: str) -> None:
        self._generator = generator
        self.name, self.stage = name, stage

    @property
    def provider(self) -> str:
        return self._generator.provider

    def summarise(self, groups: Sequence[DrugGroup]) -> list[str]:
        if not groups:
            return []
        return self._generator.generate_texts([render_prompt(g) for g in groups])


def stages_of(model_dir: Path) -> list[str]:
    """The stages a model directory holds: ``sft`` (when built from an artifact) and ``dpo``."""
    return (["sft"] if (model_dir / "sft").is_dir() else []) + ["dpo"]


def load_summariser(
    model_dir: Path,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    threads: int = 0,
    stage: str = "dpo",
    batch_size: int = 8,
) -> Summariser:
    """The summariser of one stage of a built model directory (``dpo``: the top level; ``sft``: sft/)."""
    settings = read_settings(model_dir)
    stage_dir = model_dir if stage == "dpo" else model_dir / stage
    if not stage_dir.is_dir():
        raise ModelLoadError("OV-2107", f"{model_dir} has no {stage} stage; rebuild it with `oncovigil models build`")
    max_new = int(settings.get("max_new_tokens", 160))
    generator: TextGenerator
    if settings["arch"] == "seq2seq":
        generator = Seq2SeqGenerator(stage_dir, providers, threads, max_new, batch_size)
    else:
        generator = CausalGenerator(
            stage_dir,
            providers,
            threads,
            max_new,
            settings.get("eos_token_id"),
            settings.get("pad_token_id"),
            batch_size,
        )
    return Summariser(generator, str(settings.get("registry_name", "summariser.v1")), stage)
