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

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from models.errors import ModelLoadError
from models.model_files import load_json_object, open_tokenizer
from models.runtime import CPU, DEFAULT_PROVIDERS, load_session
from models.summariser.fact_copy import CopyPlan, copy_plan, forced_continuation
from models.summariser.fit import SETTINGS_FILE, read_settings
from models.summariser.narrative import render_prompt
from models.summariser.record import DrugGroup


class TextGenerator(Protocol):
    provider: str

    def generate_texts(self, prompts: Sequence[str], plans: Sequence[CopyPlan | None] | None = None) -> list[str]: ...


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
        copy_width: int = 4,
    ) -> None:
        self._loaded = load_session(stage_dir / "model.onnx", providers, threads)
        self.provider = self._loaded.provider
        self._tokenizer = open_tokenizer(stage_dir / "tokenizer.json", "OV-2194")
        config = load_json_object(stage_dir / "config.json", "OV-2105")
        eos = eos_token_id if eos_token_id is not None else config.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        if not isinstance(eos, int) or isinstance(eos, bool):
            raise ModelLoadError(
                "OV-2105", f"{stage_dir}: no eos token id (a whole number) in config.json or {SETTINGS_FILE}"
            )
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
        self._prefix_ids: dict[str, npt.NDArray[np.int64]] = {}
        self._copy_width = copy_width
        self._outputs = ["logits"] + [f"present.{i}.{k}" for i in range(self._layers) for k in ("key", "value")]

    def _copied(self, plan: CopyPlan | None, tokens: list[int]) -> tuple[list[int], str | None]:
        """Fact-copy tokens to append after ``tokens`` (appended to it too), and the next token's constraint."""
        start = len(tokens)
        while plan is not None and len(tokens) < self._max_new:
            step = forced_continuation(plan, self._tokenizer.decode(tokens, skip_special_tokens=True))
            if step is None:
                break
            tokens.extend(self._tokenizer.encode(step.text, add_special_tokens=False).ids)
            if step.then is not None:
                return tokens[start:], step.then
        return tokens[start:], None

    def _starting_with(self, prefix: str) -> npt.NDArray[np.int64]:
        """Ids of the vocabulary entries whose text starts with ``prefix`` (computed once per prefix)."""
        if prefix not in self._prefix_ids:
            size = self._tokenizer.get_vocab_size()
            self._prefix_ids[prefix] = np.array(
                [i for i in range(size) if self._tokenizer.decode([i]).startswith(prefix)], dtype=np.int64
            )
        return self._prefix_ids[prefix]

    def _choose(self, logits: npt.NDArray[Any], then: str | None) -> int:
        if then is None:
            return int(logits.argmax())
        allowed = self._starting_with(then)
        return int(allowed[logits[allowed].argmax()]) if len(allowed) else int(logits.argmax())

    @staticmethod
    def _right_aligned(feeds: Sequence[list[int]], pad: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        width = max(len(f) for f in feeds)
        ids = np.full((len(feeds), width), pad, dtype=np.int64)
        mask = np.zeros((len(feeds), width), dtype=np.int64)
        for i, f in enumerate(feeds):  # every row's newest token sits in the last column
            ids[i, width - len(f) :] = f
            mask[i, width - len(f) :] = 1
        return ids, mask

    def _batch_generate(self, rows: Sequence[list[int]], plans: Sequence[CopyPlan | None]) -> list[list[int]]:
        """Greedy decoding of a batch; copied tokens ride along with the token chosen before them.

        A row's feed is its chosen token plus whatever fact-copy appends after it, up to ``copy_width`` tokens
        per step, so a 40-token serious sentence costs 10 steps instead of 40 (wider steps pad the other rows,
        which costs more than it saves past 4). Rows are right-aligned in each step with masked padding, and a
        row that wrote eos leaves the batch.
        """
        batch = len(rows)
        out: list[list[int]] = [[] for _ in rows]
        then: list[str | None] = [None] * batch  # what each row's next chosen token must start with
        prefill: list[list[int]] = []
        for row in range(batch):
            copied, then[row] = self._copied(plans[row], out[row])
            prefill.append(list(rows[row]) + copied)
        ids, mask = self._right_aligned(prefill, self._pad)
        positions = np.where(mask == 1, np.cumsum(mask, axis=1) - 1, 1).astype(np.int64)
        empty = np.zeros((batch, self._kv_heads, 0, self._head_dim), dtype=np.float32)
        feeds: dict[str, npt.NDArray[Any]] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        for i in range(self._layers):
            feeds[f"past_key_values.{i}.key"] = empty
            feeds[f"past_key_values.{i}.value"] = empty
        active = np.arange(batch)  # rows still writing, in the order of the batch dimension
        pending: list[list[int]] = [[] for _ in rows]  # copied tokens not fed yet (beyond one step's width)
        last = positions[:, -1]
        while True:
            result = self._loaded.session.run(self._outputs, feeds)
            logits = result[0][:, -1]
            step: list[list[int]] = []
            finished = np.zeros(len(active), dtype=bool)
            for j, row in enumerate(active.tolist()):
                # a row still feeding copied tokens makes no choice: its logits are not read
                if not pending[row]:
                    token, then[row] = int(self._choose(logits[j], then[row])), None
                    if token == self._eos or len(out[row]) >= self._max_new:
                        finished[j] = True
                        continue
                    out[row].append(token)
                    copied, then[row] = self._copied(plans[row], out[row])
                    pending[row] = [token, *copied]
                step.append(pending[row][: self._copy_width])
                pending[row] = pending[row][self._copy_width :]
            if finished.all():
                return out
            keep = ~finished
            active, last = active[keep], last[keep]
            ids, new_mask = self._right_aligned(step, self._pad)
            positions = last[:, None] + np.cumsum(new_mask, axis=1)
            last = positions[:, -1]
            mask = np.concatenate([mask[keep], new_mask], axis=1)
            feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": np.where(new_mask == 1, positions, 1)}
            everyone = bool(keep.all())  # slicing copies the whole cache: only when a row left
            for i in range(self._layers):
                key, value = result[1 + 2 * i], result[2 + 2 * i]
                feeds[f"past_key_values.{i}.key"] = key if everyone else key[keep]
                feeds[f"past_key_values.{i}.value"] = value if everyone else value[keep]

    def generate_texts(self, prompts: Sequence[str], plans: Sequence[CopyPlan | None] | None = None) -> list[str]:
        """Greedy texts; ``plans`` (one per prompt) turn on fact-copy decoding for their rows."""
        row_plans = list(plans) if plans is not None else [None] * len(prompts)
        encoded = [list(self._tokenizer.encode(p, add_special_tokens=False).ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        texts = [""] * len(prompts)
        for start in range(0, len(order), self._batch):
            chunk = order[start : start + self._batch]
            generated = self._batch_generate([encoded[i] for i in chunk], [row_plans[i] for i in chunk])
            for i, tokens in zip(chunk, generated, strict=True):
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
        # optimum and transformers each report a damaged file their own way (or try to re-export the model):
        # the two JSON files are checked here first, so a bad one is named with our codes.
        load_json_object(stage_dir / "config.json", "OV-2105")
        if (stage_dir / "tokenizer.json").is_file():
            open_tokenizer(stage_dir / "tokenizer.json", "OV-2194")
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

    def generate_texts(self, prompts: Sequence[str], plans: Sequence[CopyPlan | None] | None = None) -> list[str]:
        """Greedy texts; fact-copy plans are not applied on this path (optimum's ``generate`` decodes)."""
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
    """A generator plus its prompt format: ``summarise(groups)`` returns raw (unchecked) texts.

    ``fact_copy`` (the default) decodes with the record's serious sentence and bracketed facts copied
    (``models.summariser.fact_copy``); off, the model writes every token (the figures it is compared by).
    """

    def __init__(self, generator: TextGenerator, name: str, stage: str, fact_copy: bool = True) -> None:
        self._generator = generator
        self.name, self.stage, self.fact_copy = name, stage, fact_copy

    @property
    def provider(self) -> str:
        return self._generator.provider

    def decoding(self, fact_copy: bool) -> Summariser:
        """The same loaded model with fact-copy decoding on or off (no second ONNX session)."""
        return Summariser(self._generator, self.name, self.stage, fact_copy)

    def summarise(self, groups: Sequence[DrugGroup]) -> list[str]:
        if not groups:
            return []
        plans = [copy_plan(g) for g in groups] if self.fact_copy else None
        return self._generator.generate_texts([render_prompt(g) for g in groups], plans)


def stages_of(model_dir: Path) -> list[str]:
    """The stages a model directory holds: ``sft`` (when built from an artifact) and ``dpo``."""
    return (["sft"] if (model_dir / "sft").is_dir() else []) + ["dpo"]


def load_summariser(
    model_dir: Path,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    threads: int = 0,
    stage: str = "dpo",
    batch_size: int = 8,
    fact_copy: bool = True,
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
    return Summariser(generator, str(settings.get("registry_name", "summariser.v1")), stage, fact_copy)
