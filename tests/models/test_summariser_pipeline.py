"""The summariser end to end on tiny models: train (SFT then DPO) -> export with optimum -> generate on the
ONNX runtime -> guard. The seq2seq path is a small T5 trained from scratch (the fallback architecture); the
causal path is a random 2-layer Llama standing in for SmolLM2, with LoRA adapters merged at build time.
Random or barely trained weights: the tests assert equivalences (torch vs ONNX, batched vs single) and the
pipeline's shape, never summary quality.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from models.summariser import DrugGroup, TermCount, render_prompt
from models.summariser.build import build_summariser_dir
from models.summariser.fact_copy import copy_plan
from models.summariser.fit import FitConfig, fit_summariser, read_settings
from models.summariser.generator import CausalGenerator, load_summariser, stages_of
from models.summariser.training import SummariserTrainConfig
from tests.models.recommender_tiny import build_tiny_base

VOCAB = ["Nausea", "Fatigue", "Diarrhea", "Rash", "Anemia", "Neutrophil count decreased", "Alopecia", "Vomiting"]


def make_groups(n: int, seed: int = 5) -> list[DrugGroup]:
    rng = random.Random(seed)
    groups = []
    for i in range(n):
        terms = []
        for term in rng.sample(VOCAB, rng.randint(1, 3)):
            grades = {g: rng.randint(1, 2) for g in rng.sample([1, 2, 3, 4], rng.randint(0, 2))}
            reports = max(1, sum(grades.values()))
            terms.append(TermCount(term, reports, reports, grades, sum(n for g, n in grades.items() if g >= 3)))
        reports = sum(t.reports for t in terms)
        median = float(rng.randint(3, 40)) if i % 2 else None
        groups.append(
            DrugGroup(f"drug{chr(97 + i % 26)}", "", "2024-01-01", "2024-12-30", reports, reports, tuple(terms), median)
        )
    return groups


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("t5")
    groups = make_groups(24)
    train = SummariserTrainConfig(
        arch="seq2seq", sft_steps=120, sft_learning_rate=3e-3, dpo_steps=6, batch_size=8, threads=1, seed=3
    )
    outcome = fit_summariser(
        groups,
        VOCAB,
        root / "artifact",
        FitConfig(train=train, d_model=64, layers=2, max_new_tokens=48, tokenizer_vocab=400),
    )
    report = build_summariser_dir(root / "artifact", root / "model", threads=1)
    return {
        "groups": groups,
        "outcome": outcome,
        "report": report,
        "model": root / "model",
        "artifact": root / "artifact",
    }


def test_seq2seq_trains_both_stages_and_exports_with_parity(seq2seq: dict[str, Any]) -> None:
    hyper = seq2seq["outcome"].hyperparameters
    assert hyper["sft"]["steps"] == 120 and hyper["dpo"]["steps"] == 6
    assert hyper["sft"]["final_loss"] < hyper["sft"]["first_loss"]  # it learns something
    assert seq2seq["outcome"].pairs > 0 and set(hyper["dpo"]["pairs_by_fault"]) <= {
        "invented_event",
        "dropped_serious",
        "wrong_count",
        "wrong_grade",
    }
    report = seq2seq["report"]
    assert report["arch"] == "seq2seq" and set(report["stages"]) == {"sft", "dpo"}
    for stage in report["stages"].values():
        assert stage["parity_max_abs_logit_diff"] < 1e-3
    model = seq2seq["model"]
    assert stages_of(model) == ["sft", "dpo"]
    assert {p.name for p in model.glob("*.onnx")} == {"encoder_model.onnx", "decoder_model_merged.onnx"}
    assert read_settings(model)["arch"] == "seq2seq"


def test_seq2seq_onnx_generation_matches_torch_greedy_for_both_stages(seq2seq: dict[str, Any]) -> None:
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    groups = seq2seq["groups"][:3]
    for stage in ("sft", "dpo"):
        onnx = load_summariser(seq2seq["model"], ["CPUExecutionProvider"], threads=1, stage=stage)
        assert onnx.provider == "CPUExecutionProvider"
        texts = onnx.summarise(groups)
        folder = seq2seq["artifact"] / stage
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        torch_model = T5ForConditionalGeneration.from_pretrained(str(folder)).eval()
        for group, text in zip(groups, texts, strict=True):
            enc = tokenizer([render_prompt(group)], return_tensors="pt")
            ids = torch_model.generate(**enc, max_new_tokens=48, do_sample=False, num_beams=1)
            assert tokenizer.decode(ids[0], skip_special_tokens=True).strip() == text, stage


def test_causal_lora_build_and_numpy_decoding_match_torch_greedy(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_base(tmp_path / "base")
    groups = make_groups(8)
    train = SummariserTrainConfig(
        arch="causal",
        sft_steps=4,
        dpo_steps=2,
        batch_size=2,
        threads=1,
        lora_layers=0,
        target_modules=("q_proj", "v_proj"),
    )
    fit_summariser(groups, VOCAB, tmp_path / "artifact", FitConfig(train=train, base=str(base), max_new_tokens=12))
    assert (tmp_path / "artifact" / "dpo" / "adapter_config.json").is_file()
    report = build_summariser_dir(tmp_path / "artifact", tmp_path / "model", threads=1)
    assert all(s["parity_max_abs_logit_diff"] < 1e-3 for s in report["stages"].values())
    settings = json.loads((tmp_path / "model" / "summariser.json").read_text())
    generator = CausalGenerator(
        tmp_path / "model",
        ["CPUExecutionProvider"],
        1,
        12,
        settings["eos_token_id"],
        settings["pad_token_id"],
        batch_size=4,
    )
    prompts = [render_prompt(g) for g in groups[:3]]
    batched = generator.generate_texts(prompts)
    assert batched == [generator.generate_texts([p])[0] for p in prompts]  # left padding changes nothing
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(base)), str(tmp_path / "artifact" / "dpo")
    ).merge_and_unload()
    for prompt, text in zip(prompts, batched, strict=True):
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        out = merged.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=settings["eos_token_id"],
            pad_token_id=settings["pad_token_id"],
        )
        assert tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip() == text
    # fact-copy: every paragraph opens with its record's drug whatever the random model prefers, copied runs
    # fed several tokens per step give the same texts as one per step, and batching changes nothing
    plans = [copy_plan(g) for g in groups[:3]]
    copied = generator.generate_texts(prompts, plans)
    assert all(text.startswith(g.drug + ":") for text, g in zip(copied, groups, strict=False))
    assert copied == [generator.generate_texts([p], [plan])[0] for p, plan in zip(prompts, plans, strict=True)]
    one_at_a_time = CausalGenerator(
        tmp_path / "model", ["CPUExecutionProvider"], 1, 12, settings["eos_token_id"], settings["pad_token_id"], 4, 1
    )
    assert one_at_a_time.generate_texts(prompts, plans) == copied
    import onnx

    logits = next(o for o in onnx.load(str(tmp_path / "model" / "model.onnx")).graph.output if o.name == "logits")
    assert logits.type.tensor_type.shape.dim[1].dim_value == 1  # the graph projects the last position only
    assert report["logits"] == "last-position"
