"""ONNX Runtime sessions and the batching helpers every extractor shares.

The session is the only place that decides CPU versus GPU, and it decides from
``InferenceSession.get_providers()``: onnxruntime-gpu lists CUDA as *available* on machines without a
GPU and silently falls back to CPU, so only the created session tells the truth.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import ModelLoadError, ProviderError

DEFAULT_PROVIDERS: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class LoadedSession:
    """An onnxruntime session plus the provider it really runs on."""

    session: Any  # onnxruntime.InferenceSession (untyped library)
    provider: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    path: Path

    @property
    def on_gpu(self) -> bool:
        return self.provider != CPU

    def run(self, feeds: dict[str, Any], outputs: Sequence[str] | None = None) -> list[Any]:
        """Run with only the inputs this graph declares (tokenizers emit extras such as token_type_ids)."""
        wanted = {k: v for k, v in feeds.items() if k in self.input_names}
        result: list[Any] = self.session.run(list(outputs) if outputs else None, wanted)
        return result


def load_session(
    model_path: Path,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    threads: int = 0,
    require: str | None = None,
    spin: bool = True,
) -> LoadedSession:
    """Build an InferenceSession.

    ``threads`` 0 lets onnxruntime choose; ``require`` names a provider the session must really take;
    ``spin`` False makes idle intra-op threads sleep instead of busy-waiting.
    """
    import onnxruntime as ort

    if not model_path.is_file():
        raise ModelLoadError(
            "OV-2001",
            f"ONNX file {model_path} does not exist; run `oncovigil models build` or pass --model DIR",
        )
    if not providers:
        raise ProviderError(
            "OV-2030", "no execution provider requested; set onnx_providers, e.g. [CPUExecutionProvider]"
        )
    # Severity 4 (fatal only): on a GPU-less host the CUDA fallback logs an error and a warning that are
    # not errors for us; the provider check below reports what really happened.
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    available = set(ort.get_available_providers())
    asked = [p for p in providers if p in available]
    if not asked:
        raise ProviderError(
            "OV-2031",
            f"none of the providers {list(providers)} is available in this onnxruntime build "
            f"(available: {sorted(available)}); install onnxruntime-gpu for CUDA or request "
            "CPUExecutionProvider",
        )
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=asked)
    except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise ModelLoadError("OV-2002", f"onnxruntime cannot load {model_path}: {exc}; rebuild the model") from exc
    taken: list[str] = list(session.get_providers())
    provider = next((p for p in asked if p in taken), None)
    if provider is None:
        raise ProviderError(
            "OV-2032",
            f"onnxruntime took {taken}, none of the requested {list(providers)}; "
            "check the CUDA/cuDNN libraries or add CPUExecutionProvider to onnx_providers",
        )
    if require is not None and require not in taken:
        raise ProviderError(
            "OV-2033",
            f"{require} was required but the session runs on {taken}; install the matching CUDA 13 + cuDNN 9 "
            "runtime (onnxruntime-gpu[cuda,cudnn]) or drop the requirement",
        )
    return LoadedSession(
        session=session,
        provider=provider,
        input_names=tuple(i.name for i in session.get_inputs()),
        output_names=tuple(o.name for o in session.get_outputs()),
        path=model_path,
    )


def pick_variant(model_dir: Path, on_gpu: bool, allow_int8: bool) -> Path:
    """fp16 on GPU when exported, dynamic int8 on CPU when the export kept it, else fp32."""
    if on_gpu and (model_dir / "model_fp16.onnx").is_file():
        return model_dir / "model_fp16.onnx"
    if not on_gpu and allow_int8 and (model_dir / "model_int8.onnx").is_file():
        return model_dir / "model_int8.onnx"
    return model_dir / "model.onnx"


def load_model_dir_session(
    model_dir: Path,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    threads: int = 0,
    allow_int8: bool = True,
    require: str | None = None,
    spin: bool = True,
) -> LoadedSession:
    """Load the right ONNX variant of a model directory for the provider the session really gets.

    Whether CUDA really works is learnt from a throw-away session on a one-node graph, so the (large)
    model is loaded once, in the variant that fits.
    """
    import onnxruntime as ort

    if not providers:
        raise ProviderError(
            "OV-2030", "no execution provider requested; set onnx_providers, e.g. [CPUExecutionProvider]"
        )
    # get_all_providers() lists every name onnxruntime knows, built in or not: a name outside it is a typo,
    # which the CPU fallback below would otherwise hide. Availability is still learnt from a real session.
    known = ort.get_all_providers()
    unknown = [p for p in providers if p not in known]
    if unknown:
        raise ProviderError(
            "OV-2198", f"unknown onnxruntime execution provider(s) {unknown}; known names: {', '.join(known)}"
        )
    gpu = CUDA in providers and gpu_usable(providers)
    return load_session(pick_variant(model_dir, gpu, allow_int8), providers if gpu else [CPU], threads, require, spin)


def gpu_usable(providers: Sequence[str] = DEFAULT_PROVIDERS) -> bool:
    """True when onnxruntime really runs a session on CUDA with these providers (not just lists it)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if CUDA not in ort.get_available_providers():
        return False
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=[p for p in providers])
    except Exception:  # a broken CUDA install fails here; the caller falls back to CPU
        return False
    return CUDA in session.get_providers()


def bucket_by_length(
    items: Sequence[Any], key_len: Callable[[Any], int], max_batch: int = 32, max_tokens: int = 8192
) -> list[list[int]]:
    """Group item indices into batches of similar length so padding stays small.

    Each batch has at most ``max_batch`` items and ``len(batch) * longest`` at most ``max_tokens``
    (a single item longer than ``max_tokens`` still forms its own batch).
    """
    order = sorted(range(len(items)), key=lambda i: key_len(items[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = max(1, key_len(items[index]))
        grown = max(longest, length)
        if current and (len(current) >= max_batch or grown * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, grown = [], length
        current.append(index)
        longest = grown
    if current:
        batches.append(current)
    return batches


# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace and an upper-case
# letter, digit or bullet, or at a line break; short abbreviations (Dr., e.g., mg.) are not ends.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\-•*(\"])|\n\s*")
_ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "vs", "e.g", "i.e", "etc", "approx", "fig", "st", "mg", "pt"})


def split_sentences_with_offsets(text: str) -> list[tuple[int, int]]:
    """Sentence ``(start, end)`` character offsets into ``text``, stripped of surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if "\n" not in match.group(0):
            word = re.search(r"([A-Za-z.]+)[.!?]$", text[start : match.start()])
            if word and word.group(1).lower().rstrip(".") in _ABBREVIATIONS:
                continue
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [s for s in (_strip(text, a, b) for a, b in spans) if s[1] > s[0]]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def window_spans(
    text: str, token_len: Callable[[str], int], max_tokens: int, pack: bool = True
) -> list[tuple[int, int]]:
    """Cut a note into windows of at most ``max_tokens`` tokens on sentence boundaries, offsets kept.

    With ``pack`` consecutive sentences share a window while they fit; a single sentence longer than the
    window is cut on whitespace.
    """
    windows: list[tuple[int, int]] = []
    for start, end in split_sentences_with_offsets(text):
        for piece in _cut_long(text, start, end, token_len, max_tokens):
            if pack and windows and token_len(text[windows[-1][0] : piece[1]]) <= max_tokens:
                windows[-1] = (windows[-1][0], piece[1])
            else:
                windows.append(piece)
    return windows


def _cut_long(
    text: str, start: int, end: int, token_len: Callable[[str], int], max_tokens: int
) -> list[tuple[int, int]]:
    if token_len(text[start:end]) <= max_tokens:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    piece_start = start
    last_fit = start
    for match in re.finditer(r"\S+", text[start:end]):
        word_end = start + match.end()
        if token_len(text[piece_start:word_end]) > max_tokens and last_fit > piece_start:
            pieces.append((piece_start, last_fit))
            piece_start = start + match.start()
        last_fit = word_end
    pieces.append((piece_start, end))
    return pieces
