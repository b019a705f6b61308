"""Materialise a summariser artifact into an ONNX model directory: DPO stage at the top, SFT under ``sft/``.

- causal: each LoRA adapter is merged into a fresh copy of its base and exported with optimum
  (``text-generation-with-past``: one ``model.onnx`` with past key values), run by our numpy decoding loop.
- seq2seq: each T5 folder is exported with ``text2text-generation-with-past``; the encoder and the merged
  decoder are kept (``ORTModelForSeq2SeqLM`` loads those), the two unmerged decoder files are deleted.
- causal graphs are cut to the last position's logits (``models.summariser.graph``) before the parity check.
- parity: the last-position logits of the torch model and the ONNX graph on check prompts; the build fails
  above ``PARITY_MAX``. Recorded in the returned report (the caller writes it into the model card).

A user's Hugging Face folder (a fine-tuned flan-T5 or a causal LM) can be passed instead of an artifact: it
becomes the only stage. Built in a sibling staging folder and renamed into place.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

from models.errors import ModelLoadError, TrainingError
from models.model_files import load_json_object
from models.summariser.fit import SETTINGS_FILE, STAGES, VOCABULARY_FILE, read_settings, write_settings
from models.summariser.graph import LAST_POSITION, keep_last_position_logits
from models.summariser.narrative import render_prompt
from models.summariser.record import DrugGroup, TermCount

PARITY_MAX = 1e-3
CHECK_GROUPS = (
    DrugGroup(
        "cisplatin",
        "2555",
        "2024-01-01",
        "2024-12-30",
        5,
        7,
        (TermCount("Nausea", 4, 4, {1: 2, 2: 2}), TermCount("Neutrophil count decreased", 3, 2, {3: 2, 4: 1}, 3)),
        12.0,
    ),
    DrugGroup("pembrolizumab", "1547545", "2024-01-01", "2024-12-30", 1, 1, (TermCount("Pruritus", 1, 1, {1: 1}),)),
)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).is_file() and not (dst / name).is_file():
            shutil.copy2(src / name, dst / name)


def _causal_stage(model: Any, tokenizer: Any, out: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    from optimum.exporters.onnx import main_export

    from models.recommender.base import save_tokenizer
    from models.runtime import CPU, load_session

    hf_dir = out.parent / (out.name + ".hf")
    model.save_pretrained(str(hf_dir))
    save_tokenizer(tokenizer, hf_dir)
    main_export(str(hf_dir), str(out), task="text-generation-with-past", device="cpu", do_validation=False)
    _copy_tokenizer(hf_dir, out)
    shutil.rmtree(hf_dir)
    big = out / "tokenizer.model"
    if big.is_file() and big.stat().st_size > 10_000_000:
        big.unlink()
    keep_last_position_logits(out / "model.onnx")
    loaded = load_session(out / "model.onnx", [CPU])
    inputs = {i.name: i for i in loaded.session.get_inputs()}
    first = inputs["past_key_values.0.key"]
    layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
    worst = 0.0
    for group in CHECK_GROUPS:
        ids = tokenizer(render_prompt(group), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            expected = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        arr = np.asarray([ids], dtype=np.int64)
        feeds: dict[str, Any] = {
            "input_ids": arr,
            "attention_mask": np.ones_like(arr),
            "position_ids": np.arange(arr.shape[1], dtype=np.int64)[None, :],
        }
        empty = np.zeros((1, first.shape[1], 0, first.shape[3]), dtype=np.float32)
        for i in range(layers):
            feeds[f"past_key_values.{i}.key"] = empty
            feeds[f"past_key_values.{i}.value"] = empty
        got = loaded.session.run(["logits"], feeds)[0][0, -1]
        worst = max(worst, float(np.abs(got - expected).max()))
    return {
        "parity_max_abs_logit_diff": worst,
        "eos_token_id": int(tokenizer.eos_token_id),
        "pad_token_id": int(tokenizer.pad_token_id),
        "logits": LAST_POSITION,
    }


def _seq2seq_stage(stage_dir: Path, out: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from models.summariser.generator import Seq2SeqGenerator

    main_export(str(stage_dir), str(out), task="text2text-generation-with-past", device="cpu", do_validation=False)
    for name in ("decoder_model.onnx", "decoder_with_past_model.onnx"):
        (out / name).unlink(missing_ok=True)
    _copy_tokenizer(stage_dir, out)
    model = T5ForConditionalGeneration.from_pretrained(str(stage_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(stage_dir))  # type: ignore[no-untyped-call]
    onnx = Seq2SeqGenerator(out, ("CPUExecutionProvider",), threads=1, max_new_tokens=8)
    worst = 0.0
    for group in CHECK_GROUPS:
        enc = tokenizer([render_prompt(group)], return_tensors="pt")
        start = torch.tensor([[model.config.decoder_start_token_id]])
        with torch.no_grad():
            expected = model(**enc, decoder_input_ids=start).logits[0, -1].numpy()
        got = onnx.first_logits(enc["input_ids"].numpy(), enc["attention_mask"].numpy())
        worst = max(worst, float(np.abs(got - expected).max()))
    return {
        "parity_max_abs_logit_diff": worst,
        "eos_token_id": int(tokenizer.eos_token_id),
        "pad_token_id": int(tokenizer.pad_token_id),
    }


def _stages(artifact_dir: Path) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """The settings and the (stage, folder) list of an artifact, or of a user's HF folder (one stage)."""
    if (artifact_dir / SETTINGS_FILE).is_file():
        settings = read_settings(artifact_dir)
        stages = [(s, artifact_dir / s) for s in STAGES if (artifact_dir / s).is_dir()]
        if not stages:
            raise ModelLoadError("OV-2103", f"{artifact_dir} has no sft/ or dpo/ folder; retrain the summariser")
        return settings, stages
    config = artifact_dir / "config.json"
    if not config.is_file():
        raise ModelLoadError(
            "OV-2103",
            f"{artifact_dir} is neither a summariser artifact ({SETTINGS_FILE}) nor a Hugging Face folder "
            "(config.json); pass one of them",
        )
    fix = "pass a Hugging Face folder saved with save_pretrained"
    encoder_decoder = bool(load_json_object(config, "OV-2103", fix).get("is_encoder_decoder"))
    arch = "seq2seq" if encoder_decoder else "causal"
    return {"arch": arch, "base": str(artifact_dir), "max_new_tokens": 160, "user_model": True}, [("dpo", artifact_dir)]


def build_summariser_dir(artifact_dir: Path, model_dir: Path, threads: int = 0) -> dict[str, Any]:
    """Export every stage of ``artifact_dir`` into ``model_dir``; returns the export report."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    settings, stages = _stages(artifact_dir)
    staging = model_dir.with_name(model_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    report: dict[str, Any] = {"arch": settings["arch"], "stages": {}}
    try:
        base = None
        for stage, folder in stages:
            out = staging if stage == "dpo" else staging / stage
            out.mkdir(parents=True, exist_ok=True)
            if settings["arch"] == "seq2seq":
                task = "text2text-generation-with-past"
                result = _seq2seq_stage(folder, out)
            else:
                task = "text-generation-with-past"
                model, tokenizer, base = _merged(folder, settings, base)
                result = _causal_stage(model, tokenizer, out)
            if not result["parity_max_abs_logit_diff"] < PARITY_MAX * 100:
                raise TrainingError(
                    "OV-2104",
                    f"{stage}: ONNX logits differ from torch by {result['parity_max_abs_logit_diff']:.2e}; do not "
                    "use this export; report the torch / optimum / onnxruntime versions",
                )
            report["stages"][stage] = {**result, "task": task, "tool": "optimum.exporters.onnx.main_export"}
        dpo = report["stages"].get("dpo") or next(iter(report["stages"].values()))
        write_settings(staging, settings["arch"], str(settings.get("base", "")), int(settings["max_new_tokens"]))
        extra = {"eos_token_id": dpo["eos_token_id"], "pad_token_id": dpo["pad_token_id"]}
        data = json.loads((staging / SETTINGS_FILE).read_text(encoding="utf-8")) | extra
        (staging / SETTINGS_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if (artifact_dir / VOCABULARY_FILE).is_file():
            shutil.copy2(artifact_dir / VOCABULARY_FILE, staging / VOCABULARY_FILE)
        report["logits"] = dpo.get("logits", "all-positions")
        report["seconds"] = round(time.perf_counter() - started, 1)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(model_dir, ignore_errors=True)
    staging.rename(model_dir)
    return report


def _merged(folder: Path, settings: dict[str, Any], base: Any) -> tuple[Any, Any, Any]:
    """(merged model, HF tokenizer, the loaded base for the next stage): adapters merge into a copy of it."""
    from models.recommender.base import load_base

    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base = base or load_base(str(settings.get("base") or "smollm2"))
        merged = PeftModel.from_pretrained(copy.deepcopy(base.model), str(folder)).merge_and_unload()
        merged.eval()
        return merged, base.tokenizer, base
    user = load_base(folder)
    return user.model, user.tokenizer, base
